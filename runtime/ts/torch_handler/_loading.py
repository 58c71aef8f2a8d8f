"""Load the model an archive names: eager (modelFile + state dict), TorchScript or .pt2."""
from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import sys
import warnings
import zipfile
from types import ModuleType
from typing import Any

import torch
from mkserve.runtime.ts.utils.util import list_classes_from_module

logger = logging.getLogger(__name__)


def pick_device(gpu_id: int | None) -> torch.device:
    """cuda:{gpu_id} when a GPU was assigned and CUDA works, else CPU."""
    # gpu_id is checked first so CPU workers never initialise CUDA (fork safety, start time).
    if gpu_id is not None and torch.cuda.is_available():
        return torch.device(f"cuda:{gpu_id}")
    return torch.device("cpu")


def archive_files(model_dir: str) -> list[str]:
    try:
        names = os.listdir(model_dir)
    except OSError:
        return []
    return sorted(n for n in names if not n.startswith(".") and n != "__pycache__")


def missing_file_error(model_dir: str, file_name: str, role: str) -> FileNotFoundError:
    present = archive_files(model_dir)
    listing = ", ".join(present[:30]) + (" ..." if len(present) > 30 else "") or "nothing"
    return FileNotFoundError(
        f"the manifest's {role} {file_name!r} is not in the model archive ({model_dir}); "
        f"the archive holds: {listing}. Rebuild the archive with the file included.")


def import_model_module(model_dir: str, model_file: str) -> ModuleType:
    """Import modelFile from model_dir, reusing it if the handler already imported it."""
    path = os.path.join(model_dir, model_file)
    if not os.path.isfile(path):
        raise missing_file_error(model_dir, model_file, "modelFile")
    name = os.path.splitext(os.path.basename(model_file))[0]
    loaded = sys.modules.get(name)
    loaded_file = getattr(loaded, "__file__", None)
    if loaded_file and os.path.realpath(loaded_file) == os.path.realpath(path):
        return loaded  # type: ignore[return-value]
    # Import from the exact file: a same-named module from elsewhere (or an earlier
    # model in this process) must not stand in for this archive's model file.
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import modelFile {model_file!r} from {model_dir}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def model_class(module: ModuleType, model_file: str) -> type[torch.nn.Module]:
    """The single nn.Module subclass defined in the model file."""
    classes = list_classes_from_module(module, torch.nn.Module)
    if len(classes) != 1:
        found = ", ".join(c.__name__ for c in classes) or "none"
        raise ValueError(
            f"modelFile {model_file!r} must define exactly one torch.nn.Module class "
            f"(found {len(classes)}: {found}); move the other classes into a separate file "
            f"shipped with --extra-files and import them from {model_file}")
    return classes[0]


def load_state_dict(path: str, device: torch.device) -> Any:
    """torch.load a state dict, safely when possible."""
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - retried unsafely below, with a warning
        logger.warning(
            "%s cannot be loaded with weights_only=True (%s); loading it with full "
            "unpickling, which runs code from the archive. Save a plain state_dict "
            "to avoid this.", os.path.basename(path), str(exc).splitlines()[0][:200])
        state = torch.load(path, map_location=device, weights_only=False)
    if isinstance(state, torch.nn.Module):
        state = state.state_dict()  # a whole module saved where a state dict was expected
    return state


def _zip_names(path: str) -> list[str]:
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.namelist()
    except (OSError, zipfile.BadZipFile):
        return []


def load_torchscript(path: str, device: torch.device) -> torch.nn.Module:
    """torch.jit.load, with a clear error when the file is not TorchScript."""
    try:
        with warnings.catch_warnings():
            # TorchScript archives are what TorchServe users ship; torch's deprecation
            # notice is not actionable by whoever runs the server.
            warnings.simplefilter("ignore", DeprecationWarning)
            return torch.jit.load(path, map_location=device)
    except RuntimeError as exc:
        names = _zip_names(path)
        if not names or any(n.endswith("/constants.pkl") for n in names):
            raise
        raise RuntimeError(_not_torchscript_message(path)) from exc


def _not_torchscript_message(path: str) -> str:
    name = os.path.basename(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - only used to word the error
        state = None
    if isinstance(state, dict):
        return (f"{name} is a state_dict, not TorchScript: build the archive with "
                f"--model-file <file defining the model class> so it is loaded in eager "
                f"mode, or save torch.jit.script(model) / a .pt2 from torch.export instead")
    return (f"{name} is not TorchScript: it looks like a whole nn.Module saved with "
            f"torch.save(model), which cannot be loaded without its class. Save "
            f"torch.jit.script(model) (or torch.jit.trace), a .pt2 from torch.export.save, "
            f"or model.state_dict() together with --model-file")


def load_aot_so(path: str, device: torch.device) -> Any:
    """An AOTInductor shared library (torch._export.aot_compile, TorchServe's
    `pt2: {export: {aot_compile: true}}`), runnable on `device`."""
    try:
        from torch._export import aot_load
    except ImportError as exc:
        raise RuntimeError(f"{os.path.basename(path)} is an AOTInductor library and this "
                           "torch cannot load one (torch._export.aot_load)") from exc
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # aot_load is deprecated for .pt2 packages
        return aot_load(path, str(device))


def setup_ort_session(model_pt_path: str, map_location: str) -> Any:
    """An onnxruntime InferenceSession for the model file, on CUDA when `map_location`
    is a GPU and onnxruntime has the CUDA provider (the image needs onnxruntime:
    `mkserve build -r requirements.txt` with it listed)."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise RuntimeError(f"{os.path.basename(model_pt_path)} is an ONNX model and "
                           "onnxruntime is not installed: add onnxruntime to the archive's "
                           "requirements") from exc
    providers = ["CPUExecutionProvider"]
    if str(map_location).startswith("cuda") and \
            "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    options = ort.SessionOptions()
    return ort.InferenceSession(model_pt_path, sess_options=options, providers=providers)


def compile_options(config: dict[str, Any]) -> dict[str, Any] | None:
    """torch.compile's options from model-config.yaml's `pt2`, as TorchServe 0.12 reads it:
    `pt2: {compile: {enable: true, backend: ..., mode: ...}}`, or the older `pt2: inductor`
    / `pt2: {backend: ...}`; None when nothing is to be compiled."""
    value = config.get("pt2")
    if value is None or (isinstance(value, dict) and "export" in value):
        return None
    if isinstance(value, str):
        return {"backend": value}
    if not isinstance(value, dict):
        raise ValueError(  # noqa: TRY004 - a bad config value, reported as such
            "pt2 in model-config.yaml must be a backend name or a mapping")
    if "compile" in value:
        options = dict(value["compile"] or {})
        return options if options.pop("enable", False) is True else None
    return dict(value)


def compile_model(model: Any, options: dict[str, Any]) -> Any:
    """torch.compile(model, **options); on failure the model as it was (TorchServe's way),
    with the reason in the log."""
    from mkserve.runtime.ts.utils.util import check_valid_pt2_backend

    backend = options.get("backend")
    if backend is not None and not check_valid_pt2_backend(str(backend)):
        logger.warning("pt2: backend %r is unknown here; serving the model uncompiled", backend)
        return model
    try:
        compiled = torch.compile(model, **options)
    except Exception as exc:  # noqa: BLE001 - serving uncompiled beats not serving
        logger.warning("pt2: torch.compile(%s) failed (%s); serving the model uncompiled",
                       options, exc)
        return model
    logger.info("pt2: compiled the model with torch.compile(%s)", options)
    return compiled


def onnx_session(path: str, device: torch.device) -> Any:
    """The onnxruntime InferenceSession for an ONNX serializedFile, as TorchServe hands it
    to the handler (`self.model.run(...)` works); BaseHandler.inference runs it too."""
    return setup_ort_session(path, device.type)


def run_onnx(session: Any, *inputs: Any) -> Any:
    """An onnxruntime session called like a module: tensors in, a tensor (or a tuple)
    out. TorchServe's BaseHandler.inference fails on a session; mkserve's runs it."""
    names = [i.name for i in session.get_inputs()]
    feeds = {name: (x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x)
             for name, x in zip(names, inputs, strict=False)}
    outputs = [torch.from_numpy(o) for o in session.run(None, feeds)]
    return outputs[0] if len(outputs) == 1 else tuple(outputs)


def is_onnx_session(model: Any) -> bool:
    return type(model).__name__ == "InferenceSession" and hasattr(model, "run")


def load_pt2(path: str, device: torch.device) -> Any:
    """A torch.export program (.module()) or an AOTInductor package, placed on device."""
    if any("/data/aotinductor/" in n for n in _zip_names(path)):
        from torch._inductor import aoti_load_package

        # AOTInductor packages are compiled for one device kind; only the index is chosen here.
        return aoti_load_package(path, device_index=device.index if device.index is not None
                                 else -1)
    try:
        module = torch.export.load(path).module()
    except Exception as exc:
        raise RuntimeError(f"{os.path.basename(path)} is neither a torch.export program "
                           f"(torch.export.save) nor an AOTInductor package: {exc}") from exc
    # Exported modules refuse .eval(); they were traced in the mode they will run in.
    return module.to(device)
