#include "fw/slcan.h"

static const char hex_digits[] = "0123456789ABCDEF";

static int hex_value(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* n hex digits at p into *out; 0 on success, -1 on a non-hex digit. */
static int parse_hex(const char *p, size_t n, uint32_t *out)
{
    uint32_t v = 0;
    for (size_t i = 0; i < n; i++) {
        int d = hex_value(p[i]);
        if (d < 0) return -1;
        v = (v << 4) | (uint32_t)d;
    }
    *out = v;
    return 0;
}

static void reply(fw_slcan_t *s, const char *text, size_t n)
{
    s->write(s->io, (const uint8_t *)text, n);
}

static int bell(fw_slcan_t *s)
{
    s->bad_lines++;
    reply(s, "\a", 1);
    return -1;
}

void fw_slcan_init(fw_slcan_t *s, int (*getc)(void *io),
                   void (*write)(void *io, const uint8_t *bytes, size_t n), void *io, int start_open)
{
    s->getc = getc;
    s->write = write;
    s->io = io;
    s->len = 0;
    s->overlong = 0;
    s->open = start_open ? 1u : 0u;
    s->dropped_rx = s->dropped_tx = s->bad_lines = 0;
}

static int parse_frame(fw_slcan_t *s, const char *line, size_t len, fw_frame_t *f)
{
    const char kind = line[0];
    const int extended = kind == 'T' || kind == 'R';
    const size_t id_len = extended ? 8u : 3u;
    uint32_t id, dlc, byte;
    if (len < 1u + id_len + 1u) return bell(s);
    if (parse_hex(line + 1, id_len, &id) != 0 || parse_hex(line + 1 + id_len, 1, &dlc) != 0) return bell(s);
    if (dlc > 8u || id > (extended ? 0x1FFFFFFFu : 0x7FFu)) return bell(s);
    f->id = id;
    f->dlc = (uint8_t)dlc;
    f->extended = (uint8_t)extended;
    f->remote = (uint8_t)(kind == 'r' || kind == 'R');
    if (f->remote) {
        if (len != 2u + id_len) return bell(s);
    } else {
        if (len != 2u + id_len + 2u * dlc) return bell(s);
        for (uint32_t i = 0; i < dlc; i++) {
            if (parse_hex(line + 2 + id_len + 2u * i, 2, &byte) != 0) return bell(s);
            f->data[i] = (uint8_t)byte;
        }
    }
    for (uint32_t i = f->remote ? 0u : dlc; i < 8u; i++) f->data[i] = 0;
    reply(s, extended ? "Z\r" : "z\r", 2);
    if (s->open != 1u) {
        s->dropped_rx++;
        return 0;
    }
    return 1;
}

int fw_slcan_line(fw_slcan_t *s, const char *line, size_t len, fw_frame_t *f)
{
    if (len == 0) return bell(s);
    switch (line[0]) {
    case 't': case 'T': case 'r': case 'R':
        return parse_frame(s, line, len, f);
    case 'O': case 'L': case 'C':
        if (len != 1) return bell(s);
        s->open = line[0] == 'O' ? 1u : line[0] == 'L' ? 2u : 0u;
        reply(s, "\r", 1);
        return 0;
    case 'S':
        if (len != 2 || line[1] < '0' || line[1] > '8') return bell(s);
        reply(s, "\r", 1);
        return 0;
    case 's': {
        uint32_t btr;
        if (len != 5 || parse_hex(line + 1, 4, &btr) != 0) return bell(s);
        reply(s, "\r", 1);
        return 0;
    }
    case 'V':
        if (len != 1) return bell(s);
        reply(s, "V1013\r", 6);
        return 0;
    case 'N':
        if (len != 1) return bell(s);
        reply(s, "NBMSF\r", 6);
        return 0;
    case 'F':
        if (len != 1) return bell(s);
        reply(s, "F00\r", 4);
        return 0;
    case 'Z':
        if (len != 2 || line[1] != '0') return bell(s);
        reply(s, "\r", 1);
        return 0;
    default:
        return bell(s);
    }
}

int fw_slcan_poll(void *ctx, fw_frame_t *f)
{
    fw_slcan_t *s = (fw_slcan_t *)ctx;
    for (;;) {
        int c = s->getc(s->io);
        if (c < 0) return 0;
        if (c == '\r') {
            int r;
            if (s->overlong) {
                s->overlong = 0;
                s->len = 0;
                (void)bell(s);
                continue;
            }
            r = fw_slcan_line(s, s->line, s->len, f);
            s->len = 0;
            if (r == 1) return 1;
            continue;
        }
        if (c == '\n' && s->len == 0) continue;  /* tolerate CRLF from terminals */
        if (s->len >= FW_SLCAN_LINE_MAX - 1u) {
            s->overlong = 1;
            continue;
        }
        s->line[s->len++] = (char)c;
    }
}

int fw_slcan_send(void *ctx, const fw_frame_t *f)
{
    fw_slcan_t *s = (fw_slcan_t *)ctx;
    char out[1 + 3 + 1 + 16 + 1];
    size_t n = 0;
    if (f->extended || f->remote || f->dlc > 8u || f->id > 0x7FFu) return -1;
    if (s->open != 1u) {
        s->dropped_tx++;
        return -1;
    }
    out[n++] = 't';
    out[n++] = hex_digits[(f->id >> 8) & 0xFu];
    out[n++] = hex_digits[(f->id >> 4) & 0xFu];
    out[n++] = hex_digits[f->id & 0xFu];
    out[n++] = hex_digits[f->dlc];
    for (uint32_t i = 0; i < f->dlc; i++) {
        out[n++] = hex_digits[f->data[i] >> 4];
        out[n++] = hex_digits[f->data[i] & 0xFu];
    }
    out[n++] = '\r';
    s->write(s->io, (const uint8_t *)out, n);
    return 0;
}
