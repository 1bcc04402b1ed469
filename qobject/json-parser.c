#include "config.h"
/*
 * JSON text -> QObject.  A small lexer feeds a recursive-descent parser.
 * Strict JSON plus single-quoted strings; input must be valid UTF-8.
 * Error texts follow QEMU's ("JSON parse error, ...").
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "qobject/qobject-int.h"

#define JSON_MAX_DEPTH 1024
#define JSON_MAX_SIZE (64u << 20)

typedef enum {
    TOK_EOI, TOK_LBRACE, TOK_RBRACE, TOK_LBRACKET, TOK_RBRACKET,
    TOK_COLON, TOK_COMMA, TOK_STRING, TOK_NUMBER, TOK_KEYWORD, TOK_ERROR,
} TokType;

typedef struct {
    const char *p;          /* lexer position */
    TokType tok;
    const char *tstart;     /* current token text */
    size_t tlen;
    QObject *tval;          /* value of a string or number token */
    unsigned depth;
    Error **errp;
    bool failed;
} JsonParser;

static void parse_error(JsonParser *ps, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

/* Records the first error only; later ones are consequences. */
static void parse_error(JsonParser *ps, const char *fmt, ...)
{
    va_list ap;
    g_autofree char *msg = NULL;

    if (ps->failed) {
        return;
    }
    ps->failed = true;
    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    error_setg(ps->errp, "%s", msg);
}

/* A lexical error: QEMU reports the token text up to the bad byte. */
static void stray(JsonParser *ps, const char *end)
{
    const char *stop = *end ? end + 1 : end;
    ps->tok = TOK_ERROR;
    parse_error(ps, "JSON parse error, stray '%.*s'",
                (int)(stop - ps->tstart), ps->tstart);
}

static int hex4(const char *s)
{
    int v = 0;

    for (int i = 0; i < 4; i++) {
        if (!g_ascii_isxdigit(s[i])) {
            return -1;
        }
        v = v * 16 + g_ascii_xdigit_value(s[i]);
    }
    return v;
}

/* Appends @cp as UTF-8; U+0000 becomes C0 80 so strings stay C strings. */
static void append_cp(GString *out, int32_t cp)
{
    if (cp == 0) {
        g_string_append(out, "\xC0\x80");
    } else {
        g_string_append_unichar(out, cp);
    }
}

/* Handles \uXXXX (with surrogate pairs) at @s (after the 'u'). */
static const char *lex_unicode(JsonParser *ps, const char *s, GString *out)
{
    int cp = hex4(s), lo;

    if (cp < 0) {
        parse_error(ps, "JSON parse error, invalid escape sequence in string");
        return NULL;
    }
    if (cp >= 0xD800 && cp <= 0xDBFF && s[4] == '\\' && s[5] == 'u'
        && (lo = hex4(s + 6)) >= 0xDC00 && lo <= 0xDFFF) {
        append_cp(out, 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00));
        return s + 10;
    }
    if (cp >= 0xD800 && cp <= 0xDFFF) {
        parse_error(ps, "JSON parse error, \\u%.4s is not a valid Unicode "
                    "character", s);
        return NULL;
    }
    append_cp(out, cp);
    return s + 4;
}

/* Handles one backslash escape at @s (after the '\'). */
static const char *lex_escape(JsonParser *ps, const char *s, GString *out)
{
    static const char map[] = "\"\"''\\\\//b\bf\fn\nr\rt\t";

    if (*s == 'u') {
        return lex_unicode(ps, s + 1, out);
    }
    for (const char *m = map; *m; m += 2) {
        if (*s == m[0]) {
            g_string_append_c(out, m[1]);
            return s + 1;
        }
    }
    parse_error(ps, "JSON parse error, invalid escape sequence in string");
    return NULL;
}

/* Lexes a string quoted with @q (" or '); the token value is a QString. */
static void lex_string(JsonParser *ps, char q)
{
    g_autoptr(GString) out = g_string_new(NULL);
    const char *s = ps->p + 1;

    while (*s != q) {
        size_t len;
        if (*s == '\\') {
            s = lex_escape(ps, s + 1, out);
            if (!s) {
                ps->tok = TOK_ERROR;
                return;
            }
            continue;
        }
        if ((unsigned char)*s < 0x20 ||
            json_utf8_decode((const unsigned char *)s, &len) < 0) {
            stray(ps, s);
            return;
        }
        g_string_append_len(out, s, len);
        s += len;
    }
    ps->p = s + 1;
    ps->tok = TOK_STRING;
    ps->tval = QOBJECT(qstring_from_substr(out->str, 0, out->len));
}

static const char *skip_digits(const char *s)
{
    while (g_ascii_isdigit(*s)) {
        s++;
    }
    return s;
}

/* Scans the JSON number grammar; NULL (and a stray error) if malformed. */
static const char *scan_number(JsonParser *ps, const char *s, bool *is_int)
{
    *is_int = true;
    if (*s == '-') {
        s++;
    }
    if (*s == '0') {
        s++;
    } else if (g_ascii_isdigit(*s)) {
        s = skip_digits(s);
    } else {
        stray(ps, s);
        return NULL;
    }
    if (*s == '.') {
        *is_int = false;
        if (!g_ascii_isdigit(*++s)) {
            stray(ps, s);
            return NULL;
        }
        s = skip_digits(s);
    }
    if (*s == 'e' || *s == 'E') {
        *is_int = false;
        s += (s[1] == '+' || s[1] == '-') ? 2 : 1;
        if (!g_ascii_isdigit(*s)) {
            stray(ps, s);
            return NULL;
        }
        s = skip_digits(s);
    }
    if (g_ascii_isalnum(*s) || *s == '.') {
        stray(ps, s);
        return NULL;
    }
    return s;
}

/* int64 if it fits, else uint64 if it fits, else double, like QEMU. */
static QObject *number_value(const char *text, bool is_int)
{
    if (is_int) {
        errno = 0;
        long long v = strtoll(text, NULL, 10);
        if (!errno) {
            return QOBJECT(qnum_from_int(v));
        }
        if (text[0] != '-') {
            errno = 0;
            unsigned long long u = strtoull(text, NULL, 10);
            if (!errno) {
                return QOBJECT(qnum_from_uint(u));
            }
        }
    }
    return QOBJECT(qnum_from_double(g_ascii_strtod(text, NULL)));
}

static void lex_number(JsonParser *ps)
{
    bool is_int;
    const char *end = scan_number(ps, ps->p, &is_int);

    if (!end) {
        return;
    }
    g_autofree char *text = g_strndup(ps->p, end - ps->p);
    ps->tval = number_value(text, is_int);
    ps->tok = TOK_NUMBER;
    ps->p = end;
}

/* Lexes punctuation, "true"/"false"/"null" and invalid keywords. */
static void lex_other(JsonParser *ps)
{
    static const char punct[] = "{}[]:,";
    static const TokType ptok[] = { TOK_LBRACE, TOK_RBRACE, TOK_LBRACKET,
                                    TOK_RBRACKET, TOK_COLON, TOK_COMMA };
    const char *s = ps->p;
    const char *pc = *s ? strchr(punct, *s) : NULL;

    if (pc) {
        ps->tok = ptok[pc - punct];
        ps->p++;
        return;
    }
    if (!g_ascii_isalpha(*s)) {
        stray(ps, s);
        return;
    }
    while (g_ascii_isalpha(*s)) {
        s++;
    }
    ps->tok = TOK_KEYWORD;
    ps->p = s;
}

/* Advances to the next token; the previous token value must be taken. */
static void next_token(JsonParser *ps)
{
    g_clear_pointer(&ps->tval, qobject_unref_impl);
    if (ps->failed) {
        ps->tok = TOK_ERROR;
        return;
    }
    while (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r') {
        ps->p++;
    }
    ps->tstart = ps->p;
    if (!*ps->p) {
        ps->tok = TOK_EOI;
    } else if (*ps->p == '"' || *ps->p == '\'') {
        lex_string(ps, *ps->p);
    } else if (*ps->p == '-' || g_ascii_isdigit(*ps->p)) {
        lex_number(ps);
    } else {
        lex_other(ps);
    }
    ps->tlen = ps->p - ps->tstart;
}

static QObject *parse_value(JsonParser *ps);

/* Reports an unexpected token: EOI and lexer errors have their own text. */
static void unexpected(JsonParser *ps, const char *what)
{
    if (ps->tok == TOK_EOI) {
        parse_error(ps, "JSON parse error, premature EOI");
    } else {
        parse_error(ps, "JSON parse error, %s", what);
    }
}

/* Parses one "key": value pair into @d; the current token is the key. */
static bool parse_pair(JsonParser *ps, QDict *d)
{
    g_autoptr(QObject) key = NULL;
    QObject *value;

    if (ps->tok != TOK_STRING) {
        /* QEMU parses the key as any value, then complains about its type */
        key = parse_value(ps);
        parse_error(ps, "JSON parse error, key is not a string in object");
        return false;
    }
    key = g_steal_pointer(&ps->tval);
    next_token(ps);
    if (ps->tok != TOK_COLON) {
        unexpected(ps, "missing : in object pair");
        return false;
    }
    next_token(ps);
    value = parse_value(ps);
    if (!value) {
        return false;
    }
    if (qdict_haskey(d, qstring_get_str((QString *)key))) {
        qobject_unref(value);
        parse_error(ps, "JSON parse error, duplicate key");
        return false;
    }
    qdict_put_obj(d, qstring_get_str((QString *)key), value);
    return true;
}

static QObject *parse_object(JsonParser *ps)
{
    QDict *d = qdict_new();

    next_token(ps);
    if (ps->tok == TOK_RBRACE) {
        next_token(ps);
        return QOBJECT(d);
    }
    for (;;) {
        if (!parse_pair(ps, d)) {
            break;
        }
        if (ps->tok == TOK_RBRACE) {
            next_token(ps);
            return QOBJECT(d);
        }
        if (ps->tok != TOK_COMMA) {
            unexpected(ps, "expected separator in dict");
            break;
        }
        next_token(ps);
    }
    qobject_unref(d);
    return NULL;
}

static QObject *parse_array(JsonParser *ps)
{
    QList *l = qlist_new();

    next_token(ps);
    if (ps->tok == TOK_RBRACKET) {
        next_token(ps);
        return QOBJECT(l);
    }
    for (;;) {
        QObject *v = parse_value(ps);
        if (!v) {
            break;
        }
        qlist_append_obj(l, v);
        if (ps->tok == TOK_RBRACKET) {
            next_token(ps);
            return QOBJECT(l);
        }
        if (ps->tok != TOK_COMMA) {
            unexpected(ps, "expected separator in list");
            break;
        }
        next_token(ps);
    }
    qobject_unref(l);
    return NULL;
}

static QObject *parse_keyword(JsonParser *ps)
{
    QObject *v = NULL;

    if (ps->tlen == 4 && !strncmp(ps->tstart, "true", 4)) {
        v = QOBJECT(qbool_from_bool(true));
    } else if (ps->tlen == 5 && !strncmp(ps->tstart, "false", 5)) {
        v = QOBJECT(qbool_from_bool(false));
    } else if (ps->tlen == 4 && !strncmp(ps->tstart, "null", 4)) {
        v = QOBJECT(qnull());
    } else {
        parse_error(ps, "JSON parse error, invalid keyword '%.*s'",
                    (int)ps->tlen, ps->tstart);
        return NULL;
    }
    next_token(ps);
    return v;
}

/* Parses a container, enforcing the nesting limit. */
static QObject *parse_container(JsonParser *ps)
{
    QObject *v;

    if (++ps->depth > JSON_MAX_DEPTH) {
        parse_error(ps, "JSON nesting depth limit exceeded");
        return NULL;
    }
    v = ps->tok == TOK_LBRACE ? parse_object(ps) : parse_array(ps);
    ps->depth--;
    return v;
}

static QObject *parse_value(JsonParser *ps)
{
    QObject *v;

    switch (ps->tok) {
    case TOK_LBRACE:
    case TOK_LBRACKET:
        return parse_container(ps);
    case TOK_STRING:
    case TOK_NUMBER:
        v = g_steal_pointer(&ps->tval);
        next_token(ps);
        return v;
    case TOK_KEYWORD:
        return parse_keyword(ps);
    default:
        unexpected(ps, "expecting value");
        return NULL;
    }
}

QObject *qobject_from_json(const char *json, Error **errp)
{
    JsonParser ps = { .p = json, .errp = errp };
    QObject *v = NULL;

    if (strlen(json) > JSON_MAX_SIZE) {
        error_setg(errp, "JSON input size limit exceeded");
        return NULL;
    }
    next_token(&ps);
    if (ps.tok == TOK_EOI) {
        error_setg(errp, "Expecting a JSON value");
        return NULL;
    }
    v = parse_value(&ps);
    if (v && ps.tok != TOK_EOI) {
        parse_error(&ps, "Expecting at most one JSON value");
        g_clear_pointer(&v, qobject_unref_impl);
    }
    g_clear_pointer(&ps.tval, qobject_unref_impl);
    return v;
}
