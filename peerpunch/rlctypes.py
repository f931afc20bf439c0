"""The few GNU readline functions the ``readline`` module does not offer,
reached through ctypes in the very library that module loaded.

Python's ``readline`` has ``get_line_buffer()`` but neither the cursor
(``rl_point``) nor a way to redraw, and its ``input()`` blocks the calling
thread inside readline. :func:`bind` gives access to readline's callback
interface and display functions instead (see :mod:`peerpunch.termshell` for
how they are used, one thread at a time). It returns None, and the caller
falls back to ``input()``, for libedit (its emulation lacks some of these
and behaves differently), for GNU readline older than 7.0 (no
``rl_clear_visible_line``), and wherever the library cannot be opened or a
symbol is missing. Nothing here is called at import.
"""

import ctypes

LINE_HANDLER = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
MIN_VERSION = 0x0700
_FUNCTIONS = {        # name: (argument types, result type)
    "rl_callback_handler_install": ([ctypes.c_char_p, LINE_HANDLER], None),
    "rl_callback_read_char": ([], None),
    "rl_callback_handler_remove": ([], None),
    "rl_clear_visible_line": ([], ctypes.c_int),
    "rl_forced_update_display": ([], ctypes.c_int),
    "rl_set_prompt": ([ctypes.c_char_p], ctypes.c_int),
    "rl_resize_terminal": ([], None),
}


class Readline:
    """GNU readline's callback interface and display, through ctypes."""

    def __init__(self, lib, libc):
        self.lib = lib
        for name, (argtypes, restype) in _FUNCTIONS.items():
            function = getattr(lib, name)
            function.argtypes, function.restype = argtypes, restype
            setattr(self, name[3:], function)          # rl_set_prompt -> self.set_prompt
        self.point = ctypes.c_int.in_dll(lib, "rl_point")
        version = ctypes.c_int.in_dll(lib, "rl_readline_version").value
        state_type = ctypes.c_ulong if version >= 0x0800 else ctypes.c_int
        self._state = state_type.in_dll(lib, "rl_readline_state")
        for name in ("rl_catch_signals", "rl_catch_sigwinch"):   # our signals stay ours
            ctypes.c_int.in_dll(lib, name).value = 0
        self._free = libc.free
        self._free.argtypes, self._free.restype = [ctypes.c_void_p], None
        self._fflush = libc.fflush
        self._fflush.argtypes, self._fflush.restype = [ctypes.c_void_p], ctypes.c_int

    def state(self):
        return self._state.value

    def take_line(self, pointer):
        """The bytes of a line readline handed over (and freed), None at EOF."""
        if not pointer:
            return None
        data = ctypes.string_at(pointer)
        self._free(pointer)
        return data

    def flush(self):
        """Write out what readline left in C's stdio buffers."""
        self._fflush(None)


def bind(readline):
    """A :class:`Readline` for the *readline* module's library, or None."""
    if "libedit" in (readline.__doc__ or "") or getattr(readline, "backend", "") == "editline":
        return None
    try:
        lib = ctypes.CDLL(getattr(readline, "__file__", None))
        libc = ctypes.CDLL(None)
        if ctypes.c_int.in_dll(lib, "rl_gnu_readline_p").value != 1:
            return None
        if ctypes.c_int.in_dll(lib, "rl_readline_version").value < MIN_VERSION:
            return None
        return Readline(lib, libc)
    except (OSError, AttributeError, ValueError, TypeError):
        return None
