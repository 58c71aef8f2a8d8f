"""`ts.protocol.otf_message_handler.send_intermediate_predict_response`: stream a part.

TorchServe's backend protocol itself (frames between its Java frontend and
Python workers) does not exist in mkserve; what handlers call of it is this.
"""
from __future__ import annotations

from typing import Any


def send_intermediate_predict_response(ret: list[Any], req_id_map: dict[int, str],
                                       message: str = "Intermediate Prediction success",
                                       code: int = 200, context: Any = None) -> bool:
    """Send `ret[i]` to the client of request `req_id_map[i]` now, as one part of a
    streamed answer; the handler's return value ends each stream.

    Call it from `handle`/`inference` with the context the handler was given.
    """
    send = getattr(context, "_send_intermediate", None)
    if send is None:
        raise RuntimeError("send_intermediate_predict_response needs the context of a batch "
                           "in progress: call it from handle(), passing its context")
    send(ret, req_id_map, message, code)
    return True
