"""The numba kernels of ``kernels`` (module-level functions, so that numba caches them on disk; this
module is imported on first use only, so that importing the builder does not import numba)."""

import numba
import numpy as np
from numba.core import cgutils, types
from numba.extending import intrinsic

from .kernels import _ASCII_OF, BMP, DROP, FAST_ROW_MAX, FIELD_MAX, KEEP_CHAR, TO_SPACE, TO_SPACED_HYPHEN

jit = numba.njit(cache=True, nogil=True, boundscheck=False)
ascii_of = _ASCII_OF


@jit
def decode(data, i, end):  # pragma: no cover (compiled)
    """(code point, length) of the character whose lead byte is at ``i`` (bytes past ``end`` read 0)."""
    b = np.int64(data[i])
    b1 = np.int64(data[i + 1]) & 0x3F if i + 1 < end else 0
    if b < 0xE0:
        return ((b & 0x1F) << 6) | b1, 2
    b2 = np.int64(data[i + 2]) & 0x3F if i + 2 < end else 0
    if b < 0xF0:
        return ((b & 0x0F) << 12) | (b1 << 6) | b2, 3
    b3 = np.int64(data[i + 3]) & 0x3F if i + 3 < end else 0
    return ((b & 0x07) << 18) | (b1 << 12) | (b2 << 6) | b3, 4


@jit
def scan_rows(offsets, data, flag, stable):  # pragma: no cover (compiled)
    """Per row: (a byte with ``flag[b]``, a character outside the NFKC-stable table ``stable``)."""
    n = offsets.size - 1
    flagged = np.zeros(n, dtype=np.bool_)
    unstable = np.zeros(n, dtype=np.bool_)
    for r in range(n):
        i, end = offsets[r], offsets[r + 1]
        while i < end:
            b = data[i]
            if flag[b]:
                flagged[r] = True
            if b >= 0xC0 and not unstable[r]:
                cp, _ = decode(data, i, end)
                unstable[r] = cp >= stable.size or not stable[cp]
            i += 1
    return flagged, unstable


@jit
def rewrite(
    offsets, data, action, stable, w_fast, w_ascii, w_high, letter, symbol, hints
):  # pragma: no cover
    """Each character replaced as ``action[cp]`` says, then runs of spaces collapsed and the row
    trimmed of spaces; rows with a character beyond the BMP are flagged (and left to the caller), and so
    are rows with a character outside the NFKC-stable table ``stable`` (to be NFKC'd first); each new
    row is counted as ``counts`` does (the remaining arguments).

    A row of printable ASCII only (most rows of most corpora) of at most ``FAST_ROW_MAX`` bytes is counted
    while it is copied: one ``w_fast`` lookup per input byte (spaces, punctuation, symbols, markup bytes
    and ":"/"@" as 12-bit fields), the only bytes dropped being spaces (so the output's spaces are the
    input's less the bytes dropped), and a "." before an ASCII letter checked on the input (a kept "."
    is followed in the output by the next input byte). Any other row is counted after it is written.
    Returns (new offsets, new bytes, beyond, unstable, counts)."""
    n = offsets.size - 1
    lo, hi = offsets[0], offsets[n]
    out = np.empty(max(hi - lo, 1), dtype=np.uint8)  # no action lengthens a character
    new = np.empty(n + 1, dtype=np.int64)
    beyond = np.zeros(n, dtype=np.bool_)
    unstable = np.zeros(n, dtype=np.bool_)
    stats = new_counts(n)
    o = 0
    f = np.uint64(FAST_ROW_MAX)
    s1, s2, s3, s4 = np.uint64(12), np.uint64(24), np.uint64(36), np.uint64(48)
    for r in range(n):
        new[r] = o
        start = o
        space = True  # a space right after the row start is dropped (leading spaces)
        i, end = offsets[r], offsets[r + 1]
        fast = end - i <= FAST_ROW_MAX  # still counted on the way (see above)
        acc = np.uint64(0)
        dots = 0
        while i < end:
            b = data[i]
            if 32 <= b < 127:  # printable ASCII (the common case): kept, a space only after a non-space
                is_space = b == 32
                out[o] = b
                o += 1 - (is_space and space)
                space = is_space
                acc += w_fast[b]
                if b == 46 and i + 1 < end and data[i + 1] < 0x80 and letter[data[i + 1]]:
                    dots += 1
                i += 1
                continue
            fast = False
            length = 1
            if b < 0x80:
                a = action[b]
            elif b < 0xC0:
                a = KEEP_CHAR
            else:
                cp, length = decode(data, i, end)
                if cp >= stable.size or not stable[cp]:
                    unstable[r] = True
                if cp >= BMP:
                    beyond[r] = True
                    a = KEEP_CHAR
                else:
                    a = action[cp]
            if a == KEEP_CHAR:
                for k in range(length):
                    out[o] = data[i + k]
                    o += 1
                space = False
            elif a == TO_SPACE:
                if not space:
                    out[o] = 32
                    o += 1
                    space = True
            elif a == TO_SPACED_HYPHEN:
                if not space:
                    out[o] = 32
                    o += 1
                out[o] = 45
                out[o + 1] = 32
                o += 2
                space = True
            elif a != DROP:  # one ASCII character
                out[o] = ascii_of[a]
                o += 1
                space = False
            i += length
        if o > start and out[o - 1] == 32:
            o -= 1
        if fast:
            chars, spaces, letters, symbols, markup, url, _ = stats
            nbytes = o - start
            sp = np.int64(acc & f) - (offsets[r + 1] - offsets[r] - nbytes)  # less the dropped spaces
            pu = np.int64((acc >> s1) & f)
            sy = np.int64((acc >> s2) & f)
            chars[r] = nbytes
            spaces[r] = sp
            letters[r] = nbytes - sp - pu - sy
            symbols[r] = sy
            markup[r] = ((acc >> s3) & f) > 0
            url[r] = ((acc >> s4) & f) > 0 or dots > 0
        else:
            count_row(out, start, o, w_ascii, w_high, letter, symbol, hints, r, stats)
    new[n] = o
    return new, out[:o], beyond, unstable, stats


@jit
def count_row(data, i0, end, w_ascii, w_high, letter, symbol, dot_follow, r, out):  # pragma: no cover
    """The counts of ``data[i0:end]`` into row ``r`` of ``out`` (see ``counts``)."""
    chars, spaces, letters, symbols, markup, url, beyond = out
    f = np.uint64(0xFFFF)
    s1, s2, s3 = np.uint64(16), np.uint64(32), np.uint64(48)
    sp = pu = sy = mk = ur = cont = la = sa = lu = su = 0
    high = www = False
    i = i0
    while i < end:
        stop = min(end, i + FIELD_MAX)
        acc1 = np.uint64(0)
        acc2 = np.uint64(0)
        while i < stop:
            b = data[i]
            acc1 += w_ascii[b]
            acc2 += w_high[b]
            if dot_follow[b]:  # rare bytes: ".", "w", "W" and non-ASCII lead bytes
                if b == 46:
                    if i + 1 < end and letter[data[i + 1]] and data[i + 1] < 0x80:
                        ur += 1  # a "." followed by an ASCII letter
                elif b < 0x80:
                    if (
                        i + 3 < end
                        and (data[i + 1] | 0x20) == 0x77
                        and (data[i + 2] | 0x20) == 0x77
                        and data[i + 3] == 46
                    ):
                        www = True  # "www." in any case
                else:
                    high = True
                    cp, _ = decode(data, i, end)
                    if cp >= BMP:
                        beyond[r] = True
                    else:
                        if letter[cp]:
                            lu += 1
                        if symbol[cp]:
                            su += 1
            i += 1
        sp += np.int64(acc1 & f)
        pu += np.int64((acc1 >> s1) & f)
        sy += np.int64((acc1 >> s2) & f)
        mk += np.int64(acc1 >> s3)
        ur += np.int64(acc2 & f)
        cont += np.int64((acc2 >> s1) & f)
        la += np.int64((acc2 >> s2) & f)
        sa += np.int64(acc2 >> s3)
    high = high or cont > 0
    nbytes = end - i0
    spaces[r] = sp
    markup[r] = mk > 0
    if high:
        chars[r] = nbytes - cont
        letters[r] = la + lu
        symbols[r] = sa + su
        url[r] = ur > 0 or www
    else:
        chars[r] = nbytes
        letters[r] = nbytes - sp - pu - sy
        symbols[r] = sy
        url[r] = ur > 0


@jit
def new_counts(n):  # pragma: no cover (compiled)
    """Empty per-row count arrays: chars, spaces, letters, symbols, markup, url, beyond."""
    return (
        np.empty(n, dtype=np.int64),
        np.empty(n, dtype=np.int64),
        np.empty(n, dtype=np.float64),
        np.empty(n, dtype=np.int64),
        np.zeros(n, dtype=np.bool_),
        np.zeros(n, dtype=np.bool_),
        np.zeros(n, dtype=np.bool_),
    )


@jit
def counts(offsets, data, w_ascii, w_high, letter, symbol, dot_follow):  # pragma: no cover
    """Per row: characters, spaces, letters, symbols, a markup byte, a URL hint, a character beyond
    the BMP (see cleaning.measure for what each means for ASCII and for non-ASCII rows).

    Byte classes are summed as 16-bit fields of two uint64 words per byte (``w_ascii``: spaces,
    punctuation, symbols, markup bytes; ``w_high``: ":"/"@", continuation bytes, table letters, table
    symbols), flushed every ``FIELD_MAX`` bytes so that no field overflows."""
    n = offsets.size - 1
    out = new_counts(n)
    for r in range(n):
        count_row(data, offsets[r], offsets[r + 1], w_ascii, w_high, letter, symbol, dot_follow, r, out)
    return out


@jit
def insert(table, keys, is_new, start, size):  # pragma: no cover (compiled)
    """Open addressing with linear probing (0 = empty), keys inserted in order from ``start`` while
    the table stays at most half full; sets ``is_new[j]`` where key j was not there yet. Returns (the
    first key not handled: keys.size when all were, the new size)."""
    mask = np.uint64(table.size - 1)
    one = np.uint64(1)
    j = start
    while j < keys.size:
        k = keys[j]
        pos = k & mask
        while True:
            slot = table[pos]
            if slot == k:
                break
            if slot == 0:
                if (size + 1) * 2 > table.size:
                    return j, size
                table[pos] = k
                is_new[j] = True
                size += 1
                break
            pos = (pos + one) & mask
        j += 1
    return j, size


@jit
def rotl(x, b):  # pragma: no cover (compiled)
    return (x << np.uint64(b)) | (x >> np.uint64(64 - b))


@jit
def sipround(v0, v1, v2, v3):  # pragma: no cover (compiled)
    v0 += v1
    v1 = rotl(v1, 13)
    v1 ^= v0
    v0 = rotl(v0, 32)
    v2 += v3
    v3 = rotl(v3, 16)
    v3 ^= v2
    v0 += v3
    v3 = rotl(v3, 21)
    v3 ^= v0
    v2 += v1
    v1 = rotl(v1, 17)
    v1 ^= v2
    v2 = rotl(v2, 32)
    return v0, v1, v2, v3


@jit
def siphash(offsets, data, rows, k0, k1):  # pragma: no cover (compiled)
    """SipHash-2-4 of the bytes of each row in ``rows`` (key k0, k1), then the SplitMix64 finalizer:
    exactly ``pandas.util.hash_array`` of the rows as str objects (pandas hashes their UTF-8 bytes so)."""
    n = rows.size
    out = np.empty(n, dtype=np.uint64)
    for j in range(n):
        r = rows[j]
        i, end = offsets[r], offsets[r + 1]
        length = end - i
        v0 = k0 ^ np.uint64(0x736F6D6570736575)
        v1 = k1 ^ np.uint64(0x646F72616E646F6D)
        v2 = k0 ^ np.uint64(0x6C7967656E657261)
        v3 = k1 ^ np.uint64(0x7465646279746573)
        full = i + (length // 8) * 8
        while i <= end:
            if i < full:
                m = np.uint64(0)
                for k in range(8):
                    m |= np.uint64(data[i + k]) << np.uint64(8 * k)
                i += 8
            else:  # the last block: the remaining bytes and the length in the top byte
                m = np.uint64(length & 0xFF) << np.uint64(56)
                for k in range(end - i):
                    m |= np.uint64(data[i + k]) << np.uint64(8 * k)
                i = end + 1
            v3 ^= m
            for _ in range(2):
                v0, v1, v2, v3 = sipround(v0, v1, v2, v3)
            v0 ^= m
        v2 ^= np.uint64(0xFF)
        for _ in range(4):
            v0, v1, v2, v3 = sipround(v0, v1, v2, v3)
        h = v0 ^ v1 ^ v2 ^ v3
        h ^= h >> np.uint64(30)
        h *= np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(27)
        h *= np.uint64(0x94D049BB133111EB)
        h ^= h >> np.uint64(31)
        out[j] = h
    return out


def _is_bytes(t) -> bool:
    return isinstance(t, types.Array) and t.dtype == types.uint8 and t.ndim == 1 and t.layout == "C"


@intrinsic
def copy_bytes(typingctx, dst, at, src, start, count):  # pragma: no cover (compiled)
    """``dst[at : at + count] = src[start : start + count]`` as one ``memcpy`` (numba's slice assignment
    is a strided loop, ~5x slower on the ~100-byte pieces of a prompt). No bounds check: the caller
    sizes ``dst``. Only for contiguous uint8 arrays (anything else does not compile)."""
    if not (_is_bytes(dst) and _is_bytes(src)):
        return None
    sig = types.void(dst, types.intp, src, types.intp, types.intp)

    def codegen(context, builder, signature, args):
        d, at, s, start, count = args
        d_data = context.make_array(signature.args[0])(context, builder, d).data
        s_data = context.make_array(signature.args[2])(context, builder, s).data
        cgutils.raw_memcpy(builder, builder.gep(d_data, [at]), builder.gep(s_data, [start]), count, 1)

    return sig, codegen


@jit
def without(buf, positions):  # pragma: no cover (compiled)
    """``buf`` without the bytes at ``positions`` (sorted): the slices between them, copied once."""
    out = np.empty(buf.size - positions.size, dtype=np.uint8)
    o = 0
    prev = 0
    for p in positions:
        copy_bytes(out, o, buf, prev, p - prev)
        o += p - prev
        prev = p + 1
    copy_bytes(out, o, buf, prev, buf.size - prev)
    return out


@jit
def gather(offsets, data, rows):  # pragma: no cover (compiled)
    """The strings at ``rows`` (repeats allowed) of (offsets, bytes): sized first, then one memcpy each
    (no buffer regrown and copied on the way). Returns (int64 offsets, bytes)."""
    n = rows.size
    new = np.empty(n + 1, dtype=np.int64)
    total = 0
    for j in range(n):
        new[j] = total
        r = rows[j]
        total += offsets[r + 1] - offsets[r]
    new[n] = total
    out = np.empty(max(total, 1), dtype=np.uint8)
    for j in range(n):
        r = rows[j]
        copy_bytes(out, new[j], data, offsets[r], new[j + 1] - new[j])
    return new, out[:total]


@jit
def assemble(pieces_offsets, pieces_data, has_text, ids, text, before, after):  # pragma: no cover
    """The contents of every row's chat messages, row by row (row 0's M messages, then row 1's, ...).

    Row ``i`` with description ``d = ids[i]``, message ``m``: piece ``2 * (d * M + m)`` (the prefix), then
    when ``has_text[m]`` the row's ``before`` string and its text, then piece ``2 * (d * M + m) + 1`` (the
    suffix), and after the last message's suffix the row's ``after`` string. ``text``, ``before`` and
    ``after`` are (offsets, bytes) pairs, one string per row. Each piece is one memcpy into the one output
    buffer. Returns (int64 offsets, bytes)."""
    n_messages = has_text.size
    n = ids.size
    text_offsets, text_data = text
    before_offsets, before_data = before
    after_offsets, after_data = after
    with_text = 0
    for m in range(n_messages):
        with_text += has_text[m]
    total = 0
    for i in range(n):
        k = 2 * ids[i] * n_messages
        spoken = text_offsets[i + 1] - text_offsets[i] + before_offsets[i + 1] - before_offsets[i]
        total += pieces_offsets[k + 2 * n_messages] - pieces_offsets[k] + with_text * spoken
        total += after_offsets[i + 1] - after_offsets[i]
    out = np.empty(max(total, 1), dtype=np.uint8)
    new = np.empty(n * n_messages + 1, dtype=np.int64)
    o = 0
    for i in range(n):
        k0 = 2 * ids[i] * n_messages
        for m in range(n_messages):
            new[i * n_messages + m] = o
            k = k0 + 2 * m
            a = pieces_offsets[k]
            copy_bytes(out, o, pieces_data, a, pieces_offsets[k + 1] - a)
            o += pieces_offsets[k + 1] - a
            if has_text[m]:
                a = before_offsets[i]
                copy_bytes(out, o, before_data, a, before_offsets[i + 1] - a)
                o += before_offsets[i + 1] - a
                a = text_offsets[i]
                copy_bytes(out, o, text_data, a, text_offsets[i + 1] - a)
                o += text_offsets[i + 1] - a
            a = pieces_offsets[k + 1]
            copy_bytes(out, o, pieces_data, a, pieces_offsets[k + 2] - a)
            o += pieces_offsets[k + 2] - a
        a = after_offsets[i]
        copy_bytes(out, o, after_data, a, after_offsets[i + 1] - a)
        o += after_offsets[i + 1] - a
    new[n * n_messages] = o
    return new, out[:o]
