/* The `mps2` module: the SLCAN link (UART0) and the instruction counter of
 * the emulated board, for the frozen application (mps2_main.py).
 *
 *   mps2.read(buf) -> n       bytes received on UART0 so far, up to len(buf) (no wait)
 *   mps2.write(data)          send bytes on UART0
 *   mps2.wait(ms) -> bool     sleep until a byte is in (True) or ms passed (False)
 *   mps2.icount() -> int      instructions executed since boot, modulo 2**30
 *                             (exact under QEMU -icount; differences taken
 *                             modulo 2**30 stay small ints)
 */
#include "py/runtime.h"
#include "py/mphal.h"

static mp_obj_t mps2_read(mp_obj_t buf_in)
{
    mp_buffer_info_t info;
    mp_get_buffer_raise(buf_in, &info, MP_BUFFER_WRITE);
    return MP_OBJ_NEW_SMALL_INT(mps2_link_read((uint8_t *)info.buf, info.len));
}
static MP_DEFINE_CONST_FUN_OBJ_1(mps2_read_obj, mps2_read);

static mp_obj_t mps2_write(mp_obj_t data_in)
{
    mp_buffer_info_t info;
    mp_get_buffer_raise(data_in, &info, MP_BUFFER_READ);
    mps2_link_write((const uint8_t *)info.buf, info.len);
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_1(mps2_write_obj, mps2_write);

static mp_obj_t mps2_wait(mp_obj_t ms_in)
{
    return mp_obj_new_bool(mps2_link_wait((uint32_t)mp_obj_get_int(ms_in)));
}
static MP_DEFINE_CONST_FUN_OBJ_1(mps2_wait_obj, mps2_wait);

static mp_obj_t mps2_icount(void)
{
    return MP_OBJ_NEW_SMALL_INT(mps2_ticks_to_instructions(mps2_ticks()) & 0x3FFFFFFFu);
}
static MP_DEFINE_CONST_FUN_OBJ_0(mps2_icount_obj, mps2_icount);

static const mp_rom_map_elem_t mps2_globals_table[] = {
    { MP_ROM_QSTR(MP_QSTR___name__), MP_ROM_QSTR(MP_QSTR_mps2) },
    { MP_ROM_QSTR(MP_QSTR_read), MP_ROM_PTR(&mps2_read_obj) },
    { MP_ROM_QSTR(MP_QSTR_write), MP_ROM_PTR(&mps2_write_obj) },
    { MP_ROM_QSTR(MP_QSTR_wait), MP_ROM_PTR(&mps2_wait_obj) },
    { MP_ROM_QSTR(MP_QSTR_icount), MP_ROM_PTR(&mps2_icount_obj) },
};
static MP_DEFINE_CONST_DICT(mps2_globals, mps2_globals_table);

const mp_obj_module_t mps2_module = {
    .base = { &mp_type_module },
    .globals = (mp_obj_dict_t *)&mps2_globals,
};

MP_REGISTER_MODULE(MP_QSTR_mps2, mps2_module);
