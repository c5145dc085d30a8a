/* MicroPython on mps2-an386: start the board, the heap and the
 * interpreter, then import the frozen application (mps2_main), which serves
 * the CAN contract over SLCAN on UART0 until the machine stops. Anything
 * it raises is printed on the console (UART1), then the CPU sleeps.
 *
 * Files: a table of files built into the image (files.c, generated: native
 * modules, e.g. bmsfil_c.mpy) that `import` finds as if on a file system. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "py/builtin.h"
#include "py/compile.h"
#include "py/gc.h"
#include "py/lexer.h"
#include "py/mperrno.h"
#include "py/mphal.h"
#include "py/reader.h"
#include "py/runtime.h"
#include "py/stackctrl.h"
#include "shared/runtime/gchelper.h"

typedef struct {
    const char *name;
    const uint8_t *data;
    size_t len;
} mps2_file_t;

extern const mps2_file_t mps2_files[];
extern const size_t mps2_n_files;

static uint32_t heap[MICROPY_HEAP_SIZE / sizeof(uint32_t)];

/* How much C stack MicroPython may use (the stack grows down from the top
 * of RAM towards the heap, in .bss). */
#define STACK_LIMIT (256u * 1024u)

static const mps2_file_t *find_file(const char *path)
{
    while (path[0] == '.' && path[1] == '/') {
        path += 2;
    }
    if (path[0] == '/') {
        path++;
    }
    for (size_t i = 0; i < mps2_n_files; i++) {
        if (strcmp(mps2_files[i].name, path) == 0) {
            return &mps2_files[i];
        }
    }
    return NULL;
}

mp_import_stat_t mp_import_stat(const char *path)
{
    return find_file(path) != NULL ? MP_IMPORT_STAT_FILE : MP_IMPORT_STAT_NO_EXIST;
}

void mp_reader_new_file(mp_reader_t *reader, qstr filename)
{
    const mps2_file_t *f = find_file(qstr_str(filename));
    if (f == NULL) {
        mp_raise_OSError(MP_ENOENT);
    }
    mp_reader_new_mem(reader, f->data, f->len, 0);
}

mp_lexer_t *mp_lexer_new_from_file(qstr filename)
{
    const mps2_file_t *f = find_file(qstr_str(filename));
    if (f == NULL) {
        mp_raise_OSError(MP_ENOENT);
    }
    return mp_lexer_new_from_str_len(filename, (const char *)f->data, f->len, 0);
}

void gc_collect(void)
{
    gc_collect_start();
    gc_helper_collect_regs_and_stack();
    gc_collect_end();
}

void nlr_jump_fail(void *val)
{
    (void)val;
    mp_hal_stdout_tx_strn("FATAL: uncaught NLR\r\n", 21);
    for (;;) {
        __asm volatile("wfi");
    }
}

void __assert_func(const char *file, int line, const char *func, const char *expr);
void __assert_func(const char *file, int line, const char *func, const char *expr)
{
    (void)func;
    mp_printf(&mp_plat_print, "assertion failed: %s at %s:%d\n", expr, file, line);
    for (;;) {
        __asm volatile("wfi");
    }
}

int main(void)
{
    mps2_hal_init();
    mp_stack_ctrl_init();
    mp_stack_set_limit(STACK_LIMIT - 4096u);
    gc_init(heap, (char *)heap + sizeof(heap));
    mp_init();
    nlr_buf_t nlr;
    if (nlr_push(&nlr) == 0) {
        mp_import_name(MP_QSTR_mps2_main, mp_const_none, MP_OBJ_NEW_SMALL_INT(0));
        nlr_pop();
        mp_hal_stdout_tx_strn("mps2_main returned\r\n", 20);
    } else {
        mp_obj_print_exception(&mp_plat_print, MP_OBJ_FROM_PTR(nlr.ret_val));
    }
    mp_deinit();
    for (;;) {
        __asm volatile("wfi");
    }
}
