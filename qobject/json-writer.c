#include "config.h"
/*
 * QObject -> JSON text, in QEMU's layout: compact form uses ", " and ": "
 * separators; pretty form puts every member on its own line indented by
 * four spaces per level and the closing bracket at the parent's indent.
 */
#include <inttypes.h>
#include <string.h>
#include "qobject/qobject-int.h"

typedef struct {
    GString *out;
    bool pretty;
    unsigned depth;
} JsonWriter;

static void write_value(JsonWriter *w, const QObject *obj);

static void newline(JsonWriter *w)
{
    if (w->pretty) {
        g_string_append_printf(w->out, "\n%*s", (int)w->depth * 4, "");
    }
}

/* Like json_utf8_decode(), but also takes back C0 80, the parser's
 * encoding of U+0000. */
static int32_t utf8_decode(const unsigned char *s, size_t *len)
{
    if (s[0] == 0xC0 && s[1] == 0x80) {
        *len = 2;
        return 0;
    }
    return json_utf8_decode(s, len);
}

/* Escapes per QEMU: named escapes, \uXXXX for controls and >= 0x7F. */
static void write_codepoint(GString *out, int32_t cp)
{
    static const char named[] = "\"\"\\\\\bb\ff\nn\rr\tt";

    for (const char *p = named; *p; p += 2) {
        if (cp == (unsigned char)p[0]) {
            g_string_append_c(out, '\\');
            g_string_append_c(out, p[1]);
            return;
        }
    }
    if (cp >= 0x20 && cp < 0x7F) {
        g_string_append_c(out, (char)cp);
    } else if (cp > 0xFFFF) {
        cp -= 0x10000;
        g_string_append_printf(out, "\\u%04X\\u%04X",
                               0xD800 | (cp >> 10), 0xDC00 | (cp & 0x3FF));
    } else {
        g_string_append_printf(out, "\\u%04X", cp);
    }
}

/* Invalid UTF-8 bytes are written as U+FFFD, like QEMU. */
static void write_string(GString *out, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;

    g_string_append_c(out, '"');
    while (*p) {
        size_t len;
        int32_t cp = utf8_decode(p, &len);
        write_codepoint(out, cp < 0 ? 0xFFFD : cp);
        p += len;
    }
    g_string_append_c(out, '"');
}

static void write_number(GString *out, const QNum *n)
{
    char buf[G_ASCII_DTOSTR_BUF_SIZE];

    switch (n->kind) {
    case QNUM_I64:
        g_string_append_printf(out, "%" PRId64, n->u.i64);
        break;
    case QNUM_U64:
        g_string_append_printf(out, "%" PRIu64, n->u.u64);
        break;
    default:
        /* %.17g round-trips; g_ascii_formatd ignores the locale. */
        g_string_append(out, g_ascii_formatd(buf, sizeof(buf), "%.17g",
                                             n->u.dbl));
        break;
    }
}

/* Separator before a member: ",\n<indent>" (", " compact) or first line. */
static void member_sep(JsonWriter *w, bool first)
{
    if (!first) {
        g_string_append_c(w->out, ',');
        if (!w->pretty) {
            g_string_append_c(w->out, ' ');
        }
    }
    newline(w);
}

static void write_dict(JsonWriter *w, const QDict *d)
{
    bool first = true;

    g_string_append_c(w->out, '{');
    w->depth++;
    for (const QDictEntry *e = qdict_first(d); e; e = qdict_next(d, e)) {
        member_sep(w, first);
        first = false;
        write_string(w->out, e->key);
        g_string_append(w->out, ": ");
        write_value(w, e->value);
    }
    w->depth--;
    newline(w);
    g_string_append_c(w->out, '}');
}

static void write_list(JsonWriter *w, const QList *l)
{
    g_string_append_c(w->out, '[');
    w->depth++;
    for (const QListEntry *e = l->head; e; e = e->next) {
        member_sep(w, e == l->head);
        write_value(w, e->value);
    }
    w->depth--;
    newline(w);
    g_string_append_c(w->out, ']');
}

static void write_value(JsonWriter *w, const QObject *obj)
{
    switch (qobject_type(obj)) {
    case QTYPE_QNULL:
        g_string_append(w->out, "null");
        break;
    case QTYPE_QBOOL:
        g_string_append(w->out, ((QBool *)obj)->value ? "true" : "false");
        break;
    case QTYPE_QNUM:
        write_number(w->out, (const QNum *)obj);
        break;
    case QTYPE_QSTRING:
        write_string(w->out, ((const QString *)obj)->str);
        break;
    case QTYPE_QDICT:
        write_dict(w, (const QDict *)obj);
        break;
    case QTYPE_QLIST:
        write_list(w, (const QList *)obj);
        break;
    default:
        g_assert_not_reached();
    }
}

GString *qobject_to_json_pretty(const QObject *obj, bool pretty)
{
    JsonWriter w = { .out = g_string_new(NULL), .pretty = pretty };

    write_value(&w, obj);
    return w.out;
}

char *qobject_to_json_str(const QObject *obj)
{
    return g_string_free(qobject_to_json_pretty(obj, false), FALSE);
}
