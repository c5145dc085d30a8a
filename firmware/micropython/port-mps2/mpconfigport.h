/* MicroPython 1.23 on QEMU's mps2-an386 (Cortex-M4F, single-precision FPU):
 * the bmsfil application frozen in, floats in single precision (boxed, so
 * all 32 bits of a float are kept), native code (Thumb-2) so that native
 * .mpy modules for armv7emsp can be loaded. */
#include <alloca.h>
#include <stdint.h>

#define MICROPY_CONFIG_ROM_LEVEL (MICROPY_CONFIG_ROM_LEVEL_CORE_FEATURES)

/* Compiler kept: the frozen application needs none, but strings sent to
 * exec() and the inline assembler do. */
#define MICROPY_ENABLE_COMPILER (1)
#define MICROPY_ENABLE_GC (1)
#define MICROPY_HELPER_REPL (0)
#define MICROPY_STACK_CHECK (1)
#define MICROPY_ALLOC_PATH_MAX (128)
#define MICROPY_ENABLE_EXTERNAL_IMPORT (1)
#define MICROPY_PERSISTENT_CODE_LOAD (1)
/* Files built into the image (main.c) are read as .mpy by import. */
#define MICROPY_HAS_FILE_READER (1)
#define MICROPY_ERROR_REPORTING (MICROPY_ERROR_REPORTING_DETAILED)

/* Numbers: single-precision floats, boxed (object representation A keeps
 * every bit; representation C would drop two), arbitrary-precision ints
 * (the CAN codec builds 64-bit words). */
#define MICROPY_OBJ_REPR (MICROPY_OBJ_REPR_A)
#define MICROPY_FLOAT_IMPL (MICROPY_FLOAT_IMPL_FLOAT)
#define MICROPY_LONGINT_IMPL (MICROPY_LONGINT_IMPL_MPZ)
#define MICROPY_PY_MATH (1)
#define MICROPY_PY_MATH_SPECIAL_FUNCTIONS (0)
#define MICROPY_PY_BUILTINS_FLOAT (1)

/* Native code for Cortex-M4F: @micropython.native/viper, the inline
 * assembler, and native .mpy modules (armv7emsp) loaded at run time; their
 * code runs from RAM, in Thumb state. */
#define MICROPY_EMIT_THUMB (1)
#define MICROPY_EMIT_INLINE_THUMB (1)
#define MICROPY_MAKE_POINTER_CALLABLE(p) ((void *)((uintptr_t)(p) | 1))

#define MICROPY_PY_BUILTINS_SET (1)
#define MICROPY_PY_BUILTINS_BYTES_HEX (1)
#define MICROPY_PY_ARRAY (1)
#define MICROPY_PY_STRUCT (1)
#define MICROPY_PY_COLLECTIONS (1)
#define MICROPY_PY_MICROPYTHON (1)
#define MICROPY_PY_GC (1)
#define MICROPY_PY_SYS (1)
#define MICROPY_PY_SYS_PATH (1)
#define MICROPY_PY_SYS_PLATFORM "mps2-an386"
#define MICROPY_PY_IO (0)
#define MICROPY_PY_SYS_STDFILES (0)
#define MICROPY_KBD_EXCEPTION (0)

#define MICROPY_HW_BOARD_NAME "QEMU mps2-an386"
#define MICROPY_HW_MCU_NAME "Cortex-M4F"

#define MP_SSIZE_MAX (0x7fffffff)
typedef intptr_t mp_int_t;
typedef uintptr_t mp_uint_t;
typedef long mp_off_t;

#define MICROPY_HEAP_SIZE (1536 * 1024)
#define MP_STATE_PORT MP_STATE_VM
