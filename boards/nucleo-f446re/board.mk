# NUCLEO-F446RE: STM32F446RE (Cortex-M4F, 180 MHz, 512 KB flash, 128 KB SRAM),
# frames on bxCAN1 (PB8 RX / PB9 TX). Flashed by `bmsfil flash --board nucleo-f446re`
# (pyocd, target stm32f446retx, through the on-board ST-LINK). See README.md.
BOARD_SRC := startup.c board.c
BOARD_LDSCRIPT := link.ld
BOARD_CFLAGS := -mcpu=cortex-m4 -mthumb -mfpu=fpv4-sp-d16 -mfloat-abi=hard
BOARD_TRANSPORT := can
# The retained region is 24 KB (link.ld) and holds fw_saved_t: 24 bytes + 304 a
# cell (filter 92, plausibility monitor 48, capacity 88, R0 28, thermal 40,
# its ambient 4, flags 4), so at most 80 cells;
# board.c checks the size at compile time.
BOARD_MAX_CELLS := 80
