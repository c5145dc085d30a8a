# QEMU's mps2-an386: Arm MPS2 FPGA image AN386, a Cortex-M4F, as emulated by
# `qemu-system-arm -M mps2-an386`. Frames travel as SLCAN over UART0, which
# QEMU connects to a TCP socket.
BOARD_SRC := startup.c board.c
BOARD_LDSCRIPT := link.ld
BOARD_CFLAGS := -mcpu=cortex-m4 -mthumb -mfpu=fpv4-sp-d16 -mfloat-abi=hard
BOARD_TRANSPORT := slcan
BOARD_MAX_CELLS := 256
