"""Source of `arenas()`, for code that runs in another process (a handler, `python -c`).

Not a test module. `arenas()` counts the malloc arenas glibc reports (malloc_info):
one per thread that allocated concurrently, unless the allocator is tuned.
"""

ARENAS = '''
import ctypes as _ctypes, os as _os, tempfile as _tempfile

def arenas():
    libc = _ctypes.CDLL(None)
    libc.fopen.restype = _ctypes.c_void_p
    libc.malloc_info.argtypes = [_ctypes.c_int, _ctypes.c_void_p]
    libc.fclose.argtypes = [_ctypes.c_void_p]
    fd, path = _tempfile.mkstemp()
    _os.close(fd)
    fp = libc.fopen(path.encode(), b"w")
    libc.malloc_info(0, fp)
    libc.fclose(fp)
    with open(path) as fh:
        text = fh.read()
    _os.unlink(path)
    return text.count("<heap nr=")
'''
