#include "config.h"
/*
 * UTF-8 decoding shared by the JSON parser (which validates strings) and
 * the JSON writer (which escapes them).
 */
#include "qobject/qobject-int.h"

int32_t json_utf8_decode(const unsigned char *s, size_t *len)
{
    unsigned n = s[0] < 0x80 ? 0 : s[0] < 0xC2 ? 9 : s[0] < 0xE0 ? 1
                 : s[0] < 0xF0 ? 2 : s[0] < 0xF5 ? 3 : 9;
    static const int32_t min[] = { 0, 0x80, 0x800, 0x10000 };
    int32_t cp;

    *len = 1;
    if (n == 9) {
        return -1;
    }
    cp = n ? s[0] & (0x3F >> n) : s[0];
    for (unsigned i = 1; i <= n; i++) {
        if ((s[i] & 0xC0) != 0x80) {
            return -1;
        }
        cp = (cp << 6) | (s[i] & 0x3F);
        *len = i + 1;
    }
    if (cp < min[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
        return -1;
    }
    return cp;
}
