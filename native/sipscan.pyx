# cython: language_level=3
"""Character-level scanners for the SIP message layer (sipstack.message, headers, uri, auth).

Each walks a string once, in C, where the Python code did a slice, a find, a regular
expression or a dict look-up per piece: the parser spent most of its time there. They return
plain Python data for sipstack to wrap and never raise on malformed input:

- the *plain* scanners (split_header_block, parse_plain_params, split_plain_via) accept the
  spellings real traffic uses and answer None for anything else, so that sipstack's general
  parser, which knows every rule of RFC 3261 and the reason to give, looks at the rest;
- the predicates (is_token, is_call_id) and parse_auth_params implement their whole grammar;
  parse_auth_params reports an error as a (code, detail) pair that sipstack.auth words.

Strings are read through their PEP 393 storage (1, 2 or 4 bytes a character): every scanner
is one fused-type function, compiled once per width.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from cpython.unicode cimport (
    PyUnicode_1BYTE_KIND,
    PyUnicode_2BYTE_KIND,
    PyUnicode_DATA,
    PyUnicode_GET_LENGTH,
    PyUnicode_KIND,
    PyUnicode_Substring,
)
from libc.stdint cimport uint8_t, uint16_t, uint32_t
from libc.string cimport memchr, memcpy

# The three PEP 393 widths: Py_UCS1, Py_UCS2, Py_UCS4.
cdef extern from "Python.h":
    bint PyUnicode_IS_ASCII(object text)

ctypedef fused uchar:
    uint8_t
    uint16_t
    uint32_t

# RFC 3261 §25.1: token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~")
cdef bint SIP_TOKEN[128]
# RFC 7230 §3.2.6 tchar, the token of auth-params (RFC 7235 §2.1): the SIP token characters
# plus "#", "$", "&", "^", "|".
cdef bint HTTP_TOKEN[128]
# RFC 3261 §25.1 gen-value without its quoted-string: token / host (an IPv6 reference adds
# "[", "]" and ":").
cdef bint GEN_VALUE[128]
# RFC 3261 §25.1 callid = word [ "@" word ]; word = token characters and
# "(" / ")" / "<" / ">" / ":" / "\" / DQUOTE / "/" / "[" / "]" / "?" / "{" / "}".
cdef bint WORD[128]


cdef void _fill_tables() noexcept:
    cdef int c
    for c in range(128):
        SIP_TOKEN[c] = (48 <= c <= 57) or (65 <= c <= 90) or (97 <= c <= 122)
    for c in b"-.!%*_+`'~":
        SIP_TOKEN[c] = True
    for c in range(128):
        HTTP_TOKEN[c] = SIP_TOKEN[c]
        GEN_VALUE[c] = SIP_TOKEN[c]
        WORD[c] = SIP_TOKEN[c]
    for c in b"#$&^|":
        HTTP_TOKEN[c] = True
    for c in b"[]:":
        GEN_VALUE[c] = True
    for c in b"()<>:\\\"/[]?{}":
        WORD[c] = True


_fill_tables()


cdef inline bint _in(const bint* table, uint32_t c) noexcept:
    return c < 128 and table[c]


cdef inline uint32_t _lower(uint32_t c) noexcept:
    return c + 32 if 65 <= c <= 90 else c


# --- known names ---------------------------------------------------------------------------

cdef class NameTable:
    """Known ASCII names, looked up case-insensitively straight from a string's storage:
    no str is made (nor hashed) for a name found here. Maps each lower-case name to a
    value given at construction."""

    # Bucket (length, first character) -> list of (lower-case name as bytes, value).
    cdef list _buckets

    def __init__(self, dict names not None):
        cdef bytes raw
        self._buckets = [None] * 1024
        for name, value in names.items():
            if not isinstance(name, str) or not name or not name.isascii() or name != name.lower():
                raise ValueError(f"NameTable names must be non-empty lower-case ASCII: {name!r}")
            raw = name.encode("ascii")
            index = _bucket(len(raw), raw[0])
            if self._buckets[index] is None:
                self._buckets[index] = []
            self._buckets[index].append((raw, value))

    def get(self, str name not None):
        """The value for ``name`` in any letter case, or None."""
        cdef int kind = PyUnicode_KIND(name)
        cdef void* data = PyUnicode_DATA(name)
        cdef Py_ssize_t n = PyUnicode_GET_LENGTH(name)
        if n == 0:
            return None
        if kind == PyUnicode_1BYTE_KIND:
            return _find(self, <const uint8_t*>data, 0, n)
        if kind == PyUnicode_2BYTE_KIND:
            return _find(self, <const uint16_t*>data, 0, n)
        return _find(self, <const uint32_t*>data, 0, n)


cdef inline Py_ssize_t _bucket(Py_ssize_t length, uint32_t first) noexcept:
    return ((length & 31) << 5) | (_lower(first) & 31)


cdef object _find(NameTable table, const uchar* s, Py_ssize_t start, Py_ssize_t end):
    """The value of the name ``s[start:end]`` (not empty), or None."""
    cdef Py_ssize_t length = end - start, k
    cdef object bucket = table._buckets[_bucket(length, s[start])]
    cdef bytes raw
    cdef const unsigned char* chars
    if bucket is None:
        return None
    for entry in <list>bucket:
        raw = <bytes>(<tuple>entry)[0]
        if len(raw) != length:
            continue
        chars = raw
        for k in range(length):
            if _lower(s[start + k]) != chars[k]:
                break
        else:
            return (<tuple>entry)[1]
    return None


# --- header block --------------------------------------------------------------------------

def split_header_block(str head not None, NameTable names not None, Py_ssize_t max_fields,
                       Py_ssize_t max_line):
    """Split a decoded header block (start-line, then header lines, without the empty line
    that ends it) into ``(start_line, fields, index)``, or None when the block is not plain.

    ``fields`` lists ``(key, name, value)`` per header line in order, ``index`` maps each key
    to its values in order. ``names`` maps a known name (lower case) to its
    ``(key, canonical name)``; any other name is its own canonical name and its lower-case
    form is its key. Values lose the spaces and tabs around them.

    Plain means: every line ends in CRLF (the last one needs none), no line starts with
    whitespace (folding, RFC 3261 §7.3.1), no control character but HTAB, no line longer than
    ``max_line``, at most ``max_fields`` header lines, each a name of ASCII token characters,
    optional spaces or tabs, then a colon.
    """
    cdef int kind = PyUnicode_KIND(head)
    cdef void* data = PyUnicode_DATA(head)
    cdef Py_ssize_t n = PyUnicode_GET_LENGTH(head)
    if kind == PyUnicode_1BYTE_KIND:
        return _split_block(<const uint8_t*>data, n, head, names, max_fields, max_line)
    if kind == PyUnicode_2BYTE_KIND:
        return _split_block(<const uint16_t*>data, n, head, names, max_fields, max_line)
    return _split_block(<const uint32_t*>data, n, head, names, max_fields, max_line)


cdef object _split_block(const uchar* s, Py_ssize_t n, str head, NameTable names,
                         Py_ssize_t max_fields, Py_ssize_t max_line):
    cdef Py_ssize_t line_start = 0, i, line_end, name_end, value_start, value_end
    cdef Py_ssize_t count = 0
    cdef uint32_t c
    cdef bint upper
    cdef object start_line = None
    cdef object known, values
    cdef str name, value, key
    cdef list fields = []
    cdef dict index = {}
    while True:
        # The end of this line: a CR that must start a CRLF, or the end of the block.
        i = line_start
        while i < n:
            c = s[i]
            if c < 32 or c == 127:
                if c == 13:
                    break
                if c != 9:
                    return None  # a bare LF or another control character
            i += 1
        if i < n and (i + 1 >= n or s[i + 1] != 10):
            return None  # a bare CR
        line_end = i
        if line_end - line_start > max_line:
            return None
        if start_line is None:
            start_line = PyUnicode_Substring(head, line_start, line_end)
        else:
            count += 1
            if count > max_fields:
                return None
            # name = token characters, then optional SP/HTAB, then ":". A line starting
            # with whitespace (a continuation) has an empty name: left to the full parser.
            i = line_start
            upper = False
            while i < line_end and _in(SIP_TOKEN, s[i]):
                if 65 <= s[i] <= 90:
                    upper = True
                i += 1
            name_end = i
            if name_end == line_start:
                return None
            while i < line_end and (s[i] == 32 or s[i] == 9):
                i += 1
            if i >= line_end or s[i] != 58:  # ":"
                return None
            value_start = i + 1
            while value_start < line_end and (s[value_start] == 32 or s[value_start] == 9):
                value_start += 1
            value_end = line_end
            while value_end > value_start and (s[value_end - 1] == 32 or s[value_end - 1] == 9):
                value_end -= 1
            value = PyUnicode_Substring(head, value_start, value_end)
            known = _find(names, s, line_start, name_end)
            if known is None:
                name = PyUnicode_Substring(head, line_start, name_end)
                known = (name.lower() if upper else name, name)
            key = <str>(<tuple>known)[0]
            fields.append((key, (<tuple>known)[1], value))
            values = index.get(key)
            if values is None:
                index[key] = [value]
            else:
                (<list>values).append(value)
        if line_end >= n:
            return start_line, fields, index
        line_start = line_end + 2  # past the CRLF


def find_head_end(bytes data not None, Py_ssize_t start):
    """``(end of the header block, start of the body)`` for the first empty line at or after
    ``start``: CRLF CRLF, or LF LF from lenient peers, whichever comes first; or (-1, -1)."""
    cdef const unsigned char* p = data
    cdef Py_ssize_t n = len(data)
    cdef Py_ssize_t i
    cdef const unsigned char* hit
    if start < 0:
        start = 0
    i = start
    while i < n:
        hit = <const unsigned char*>memchr(p + i, 10, n - i)  # the next LF
        if hit == NULL:
            break
        i = hit - p
        if i + 1 < n and p[i + 1] == 10:
            return i, i + 2
        if i + 2 < n and p[i + 1] == 13 and p[i + 2] == 10 and i - 1 >= start and p[i - 1] == 13:
            return i - 1, i + 3
        i += 1
    return -1, -1


def serialize_message(str start_line not None, list fields not None, bytes body not None):
    """The wire form of a message whose text is all ASCII: the start-line, each field of
    ``fields`` (``(key, name, value)``) as ``name: value``, the first ``content-length``
    field written as ``Content-Length: <len(body)>`` and the others left out (one added at
    the end when there is none), each line ended by CRLF, an empty line, then ``body``.
    None when some text is not ASCII: its UTF-8 encoding is left to the caller."""
    cdef Py_ssize_t total, length_digits, pos
    cdef bint wrote_length = False
    cdef bytes length_text = str(len(body)).encode("ascii")
    cdef bytes out
    cdef char* dst
    cdef tuple field
    if not PyUnicode_IS_ASCII(start_line):
        return None
    length_digits = len(length_text)
    total = PyUnicode_GET_LENGTH(start_line) + 2
    for item in fields:
        field = <tuple>item
        if <str>field[0] == "content-length":
            if not wrote_length:
                total += 16 + length_digits + 2  # "Content-Length: " n CRLF
                wrote_length = True
            continue
        if not PyUnicode_IS_ASCII(<str>field[1]) or not PyUnicode_IS_ASCII(<str>field[2]):
            return None
        total += PyUnicode_GET_LENGTH(<str>field[1]) + 2 + PyUnicode_GET_LENGTH(<str>field[2]) + 2
    if not wrote_length:
        total += 16 + length_digits + 2
    total += 2 + len(body)
    out = PyBytes_FromStringAndSize(NULL, total)
    dst = PyBytes_AS_STRING(out)
    pos = _put(dst, 0, start_line)
    pos = _put_bytes(dst, pos, b"\r\n")
    wrote_length = False
    for item in fields:
        field = <tuple>item
        if <str>field[0] == "content-length":
            if not wrote_length:
                pos = _put_bytes(dst, pos, b"Content-Length: ")
                pos = _put_bytes(dst, pos, length_text)
                pos = _put_bytes(dst, pos, b"\r\n")
                wrote_length = True
            continue
        pos = _put(dst, pos, <str>field[1])
        pos = _put_bytes(dst, pos, b": ")
        pos = _put(dst, pos, <str>field[2])
        pos = _put_bytes(dst, pos, b"\r\n")
    if not wrote_length:
        pos = _put_bytes(dst, pos, b"Content-Length: ")
        pos = _put_bytes(dst, pos, length_text)
        pos = _put_bytes(dst, pos, b"\r\n")
    pos = _put_bytes(dst, pos, b"\r\n")
    _put_bytes(dst, pos, body)
    return out


cdef inline Py_ssize_t _put(char* dst, Py_ssize_t pos, str text) noexcept:
    """Copy an ASCII str (stored one byte a character) to ``dst[pos:]``."""
    cdef Py_ssize_t n = PyUnicode_GET_LENGTH(text)
    memcpy(dst + pos, PyUnicode_DATA(text), n)
    return pos + n


cdef inline Py_ssize_t _put_bytes(char* dst, Py_ssize_t pos, bytes data) noexcept:
    cdef Py_ssize_t n = len(data)
    memcpy(dst + pos, PyBytes_AS_STRING(data), n)
    return pos + n


# --- header values -------------------------------------------------------------------------

def has_controls(str text not None):
    """True when ``text`` holds a control character other than HTAB (RFC 3261 §25.1 allows
    those only as quoted-pairs, and CR and LF nowhere in a value)."""
    cdef int kind = PyUnicode_KIND(text)
    cdef void* data = PyUnicode_DATA(text)
    cdef Py_ssize_t n = PyUnicode_GET_LENGTH(text)
    if kind == PyUnicode_1BYTE_KIND:
        return _has_controls(<const uint8_t*>data, n)
    if kind == PyUnicode_2BYTE_KIND:
        return _has_controls(<const uint16_t*>data, n)
    return _has_controls(<const uint32_t*>data, n)


cdef bint _has_controls(const uchar* s, Py_ssize_t n) noexcept:
    cdef Py_ssize_t i
    for i in range(n):
        if (s[i] < 32 and s[i] != 9) or s[i] == 127:
            return True
    return False


def is_token(str text not None):
    """True when ``text`` is a non-empty RFC 3261 §25.1 token."""
    cdef int kind = PyUnicode_KIND(text)
    cdef void* data = PyUnicode_DATA(text)
    cdef Py_ssize_t n = PyUnicode_GET_LENGTH(text)
    if kind == PyUnicode_1BYTE_KIND:
        return _all_in(SIP_TOKEN, <const uint8_t*>data, n)
    if kind == PyUnicode_2BYTE_KIND:
        return _all_in(SIP_TOKEN, <const uint16_t*>data, n)
    return _all_in(SIP_TOKEN, <const uint32_t*>data, n)


cdef bint _all_in(const bint* table, const uchar* s, Py_ssize_t n) noexcept:
    cdef Py_ssize_t i
    if n == 0:
        return False
    for i in range(n):
        if not _in(table, s[i]):
            return False
    return True


def is_call_id(str text not None):
    """True when ``text`` is an RFC 3261 §25.1 callid: a word, optionally "@" and a word."""
    cdef int kind = PyUnicode_KIND(text)
    cdef void* data = PyUnicode_DATA(text)
    cdef Py_ssize_t n = PyUnicode_GET_LENGTH(text)
    if kind == PyUnicode_1BYTE_KIND:
        return _is_call_id(<const uint8_t*>data, n)
    if kind == PyUnicode_2BYTE_KIND:
        return _is_call_id(<const uint16_t*>data, n)
    return _is_call_id(<const uint32_t*>data, n)


cdef bint _is_call_id(const uchar* s, Py_ssize_t n) noexcept:
    cdef Py_ssize_t i, at = -1
    for i in range(n):
        if s[i] == 64:  # "@"
            if at >= 0:
                return False
            at = i
        elif not _in(WORD, s[i]):
            return False
    if at < 0:
        return n > 0
    return 0 < at < n - 1


def parse_plain_params(str text not None):
    """The ``;name[=value]`` generic-params of ``text`` (RFC 3261 §25.1) as a dict, names
    lower-cased, the first of a repeated name kept, None for a name without value; or None
    when ``text`` is not plain: anything but a run of ``;token`` each optionally followed by
    ``=`` and a token-or-host value (no whitespace, no quoted string, nothing empty).
    """
    cdef int kind = PyUnicode_KIND(text)
    cdef void* data = PyUnicode_DATA(text)
    cdef Py_ssize_t n = PyUnicode_GET_LENGTH(text)
    if n == 0:
        return None
    if kind == PyUnicode_1BYTE_KIND:
        return _params_from(<const uint8_t*>data, n, text, 0)
    if kind == PyUnicode_2BYTE_KIND:
        return _params_from(<const uint16_t*>data, n, text, 0)
    return _params_from(<const uint32_t*>data, n, text, 0)


cdef object _params_from(const uchar* s, Py_ssize_t n, str text, Py_ssize_t pos):
    """The plain params of ``text[pos:]`` (see parse_plain_params) as a dict, or None."""
    cdef Py_ssize_t name_start, name_end, value_start
    cdef bint upper
    cdef dict params = {}
    cdef str name
    cdef object value
    while pos < n:
        if s[pos] != 59:  # ";"
            return None
        pos += 1
        name_start = pos
        upper = False
        while pos < n and _in(SIP_TOKEN, s[pos]):
            if 65 <= s[pos] <= 90:
                upper = True
            pos += 1
        name_end = pos
        if name_end == name_start:
            return None
        value = None
        if pos < n and s[pos] == 61:  # "="
            pos += 1
            value_start = pos
            while pos < n and _in(GEN_VALUE, s[pos]):
                pos += 1
            if pos == value_start:
                return None
            value = PyUnicode_Substring(text, value_start, pos)
        name = PyUnicode_Substring(text, name_start, name_end)
        if upper:
            name = name.lower()
        if name not in params:
            params[name] = value
    return params


def split_plain_via(str text not None):
    """``(protocol-name, protocol-version, transport, sent-by, params)`` of a via-parm
    (RFC 3261 §25.1) written plainly, or None: ``name/version/transport``, whitespace,
    a sent-by (anything up to whitespace or ";", not checked here), optional whitespace,
    then plain params (see parse_plain_params) or nothing. ``text`` has no whitespace
    around it."""
    cdef int kind = PyUnicode_KIND(text)
    cdef void* data = PyUnicode_DATA(text)
    cdef Py_ssize_t n = PyUnicode_GET_LENGTH(text)
    if kind == PyUnicode_1BYTE_KIND:
        return _split_via(<const uint8_t*>data, n, text)
    if kind == PyUnicode_2BYTE_KIND:
        return _split_via(<const uint16_t*>data, n, text)
    return _split_via(<const uint32_t*>data, n, text)


cdef object _split_via(const uchar* s, Py_ssize_t n, str text):
    cdef Py_ssize_t pos = 0, part, by_start, by_end
    cdef Py_ssize_t starts[3]
    cdef Py_ssize_t ends[3]
    cdef object params
    for part in range(3):
        starts[part] = pos
        while pos < n and _in(SIP_TOKEN, s[pos]):
            pos += 1
        ends[part] = pos
        if pos == starts[part]:
            return None
        if part < 2:
            if pos >= n or s[pos] != 47:  # "/"
                return None
            pos += 1
    by_start = pos
    while pos < n and (s[pos] == 32 or s[pos] == 9):
        pos += 1
    if pos == by_start:
        return None  # no LWS before the sent-by
    by_start = pos
    while pos < n and s[pos] != 32 and s[pos] != 9 and s[pos] != 59:
        pos += 1
    by_end = pos
    if by_end == by_start:
        return None
    while pos < n and (s[pos] == 32 or s[pos] == 9):
        pos += 1
    params = _params_from(s, n, text, pos)
    if params is None:
        return None
    return (PyUnicode_Substring(text, starts[0], ends[0]), PyUnicode_Substring(text, starts[1], ends[1]),
            PyUnicode_Substring(text, starts[2], ends[2]), PyUnicode_Substring(text, by_start, by_end),
            params)


# --- auth-params ---------------------------------------------------------------------------

# Error codes of parse_auth_params (sipstack.auth words the reason phrases).
AUTH_NOT_DIGEST = 1
AUTH_NO_SPACE = 2
AUTH_UNEXPECTED = 3
AUTH_NO_VALUE = 4
AUTH_UNTERMINATED = 5
AUTH_TWICE = 6


def parse_auth_params(str text not None, NameTable names not None):
    """Split ``Digest name=value, name="quoted", ...`` (RFC 3261 §25.1 challenge and
    digest-response, RFC 7235 §2.1 auth-param) into a dict keyed by lower-case name.

    ``text`` has had its surrounding whitespace stripped. ``names`` maps the parameter names
    met most (lower case) to themselves, so that they are not made anew each time. Returns
    the dict, or ``(code, detail)`` for an AUTH_* error: detail is the parameter name, or for
    AUTH_UNEXPECTED the character found where a name should start.

    Quoted values lose their quotes and quoted-pair backslashes; unquoted values run to the
    next comma and lose surrounding whitespace (str.strip). Separators between parameters
    are any run of SP, HTAB, CR, LF and commas.
    """
    cdef int kind = PyUnicode_KIND(text)
    cdef void* data = PyUnicode_DATA(text)
    cdef Py_ssize_t n = PyUnicode_GET_LENGTH(text)
    if kind == PyUnicode_1BYTE_KIND:
        return _auth_params(<const uint8_t*>data, n, text, names)
    if kind == PyUnicode_2BYTE_KIND:
        return _auth_params(<const uint16_t*>data, n, text, names)
    return _auth_params(<const uint32_t*>data, n, text, names)


cdef object _auth_params(const uchar* s, Py_ssize_t n, str text, NameTable names):
    cdef Py_ssize_t pos = 0, start, stop, count
    cdef uint32_t c
    cdef bint escaped, upper
    cdef dict params = {}
    cdef object name
    cdef str param

    while pos < n and _in(HTTP_TOKEN, s[pos]):
        pos += 1
    if not _is_lower_of(s, 0, pos, b"digest"):
        return AUTH_NOT_DIGEST, ""
    if pos < n and s[pos] != 32 and s[pos] != 9:
        return AUTH_NO_SPACE, ""
    while True:
        while pos < n:
            c = s[pos]
            if c != 32 and c != 9 and c != 13 and c != 10 and c != 44:
                break
            pos += 1
        if pos >= n:
            break
        start = pos
        upper = False
        while pos < n and _in(HTTP_TOKEN, s[pos]):
            if 65 <= s[pos] <= 90:
                upper = True
            pos += 1
        if pos == start:
            return AUTH_UNEXPECTED, PyUnicode_Substring(text, pos, pos + 1)
        name = _find(names, s, start, pos)
        if name is None:
            name = PyUnicode_Substring(text, start, pos)
            if upper:
                name = name.lower()
        while pos < n and (s[pos] == 32 or s[pos] == 9):
            pos += 1
        if pos >= n or s[pos] != 61:  # "="
            return AUTH_NO_VALUE, name
        pos += 1
        while pos < n and (s[pos] == 32 or s[pos] == 9):
            pos += 1
        if pos < n and s[pos] == 34:  # '"'
            # quoted-string = DQUOTE *(qdtext / quoted-pair) DQUOTE
            start = pos + 1
            pos = start
            escaped = False
            while True:
                if pos >= n:
                    return AUTH_UNTERMINATED, name
                c = s[pos]
                if c == 92:  # backslash: the next character, whatever it is, is literal
                    if pos + 1 >= n:
                        return AUTH_UNTERMINATED, name
                    escaped = True
                    pos += 2
                    continue
                if c == 34:
                    break
                pos += 1
            param = PyUnicode_Substring(text, start, pos)
            pos += 1
            if escaped:
                param = _unescape_pairs(param)
        else:
            stop = pos
            while stop < n and s[stop] != 44:  # ","
                stop += 1
            param = PyUnicode_Substring(text, pos, stop).strip()
            pos = stop
        count = len(params)
        params[name] = param
        if len(params) == count:  # the name was there already
            return AUTH_TWICE, name
    return params


cdef bint _is_lower_of(const uchar* s, Py_ssize_t start, Py_ssize_t end, bytes word) noexcept:
    """True when ``s[start:end]`` is ``word`` (lower-case ASCII) in any letter case."""
    cdef const unsigned char* chars = word
    cdef Py_ssize_t k
    if end - start != len(word):
        return False
    for k in range(end - start):
        if _lower(s[start + k]) != chars[k]:
            return False
    return True


cdef str _unescape_pairs(str inner):
    """``inner`` (a quoted-string's content) with each backslash-character pair replaced
    by the character."""
    cdef Py_ssize_t n = PyUnicode_GET_LENGTH(inner)
    cdef Py_ssize_t i = 0, start = 0
    cdef list parts = []
    while i < n:
        if inner[i] == "\\" and i + 1 < n:
            parts.append(PyUnicode_Substring(inner, start, i))
            start = i + 1  # keep the escaped character
            i += 2
            continue
        i += 1
    parts.append(PyUnicode_Substring(inner, start, n))
    return "".join(parts)
