/* The few STM32F446 and Cortex-M4 registers this board uses, written out
 * from RM0390 (STM32F446xx reference manual) and the ARMv7-M architecture
 * manual instead of pulling in the vendor's CMSIS headers. Addresses are
 * base + offset as the register maps give them; only the bits used are
 * named. */
#ifndef NUCLEO_F446RE_STM32F446_H
#define NUCLEO_F446RE_STM32F446_H

#include <stdint.h>

#define REG32(addr) (*(volatile uint32_t *)(uintptr_t)(addr))

/* --- Cortex-M4 system control space -------------------------------------- */
#define SCB_ICSR REG32(0xE000ED04u)
#define SCB_ICSR_PENDSTSET (1u << 26)
#define SCB_VTOR REG32(0xE000ED08u)
#define SCB_AIRCR REG32(0xE000ED0Cu)
#define SCB_AIRCR_SYSRESETREQ_KEYED 0x05FA0004u      /* VECTKEY | SYSRESETREQ */
#define SCB_SHPR3 REG32(0xE000ED20u)                 /* PRI_15 (SysTick) in [31:24] */
#define SCB_CPACR REG32(0xE000ED88u)
#define SCB_CPACR_CP10_CP11_FULL (0xFu << 20)

#define SYST_CSR REG32(0xE000E010u)
#define SYST_CSR_ENABLE (1u << 0)
#define SYST_CSR_TICKINT (1u << 1)
#define SYST_CSR_CLKSOURCE_CPU (1u << 2)
#define SYST_RVR REG32(0xE000E014u)
#define SYST_CVR REG32(0xE000E018u)

/* Debug MCU: keep the core clock during Sleep so that a debugger (pyocd)
 * can attach while the firmware sits in WFI. */
#define DBGMCU_CR REG32(0xE0042004u)
#define DBGMCU_CR_DBG_SLEEP (1u << 0)

#define NVIC_ISER(n) REG32(0xE000E100u + 4u * (n))
#define NVIC_IPR_BYTE(irq) (*(volatile uint8_t *)(uintptr_t)(0xE000E400u + (irq)))

/* --- Flash interface (RM0390 3.8) ----------------------------------------- */
#define FLASH_ACR REG32(0x40023C00u)
#define FLASH_ACR_LATENCY_MASK 0xFu
#define FLASH_ACR_PRFTEN (1u << 8)
#define FLASH_ACR_ICEN (1u << 9)
#define FLASH_ACR_DCEN (1u << 10)

/* --- Power controller (RM0390 5.4) ---------------------------------------- */
#define PWR_CR REG32(0x40007000u)
#define PWR_CR_VOS_SCALE1 (3u << 14)
#define PWR_CR_ODEN (1u << 16)
#define PWR_CR_ODSWEN (1u << 17)
#define PWR_CSR REG32(0x40007004u)
#define PWR_CSR_VOSRDY (1u << 14)
#define PWR_CSR_ODRDY (1u << 16)
#define PWR_CSR_ODSWRDY (1u << 17)

/* --- Reset and clock control (RM0390 6.3) --------------------------------- */
#define RCC_BASE 0x40023800u
#define RCC_CR REG32(RCC_BASE + 0x00u)
#define RCC_CR_HSION (1u << 0)
#define RCC_CR_HSIRDY (1u << 1)
#define RCC_CR_HSEON (1u << 16)
#define RCC_CR_HSERDY (1u << 17)
#define RCC_CR_HSEBYP (1u << 18)
#define RCC_CR_PLLON (1u << 24)
#define RCC_CR_PLLRDY (1u << 25)
#define RCC_PLLCFGR REG32(RCC_BASE + 0x04u)
#define RCC_PLLCFGR_PLLM(m) ((uint32_t)(m) << 0)    /* 2..63 */
#define RCC_PLLCFGR_PLLN(n) ((uint32_t)(n) << 6)    /* 50..432 */
#define RCC_PLLCFGR_PLLP_DIV2 (0u << 16)
#define RCC_PLLCFGR_PLLSRC_HSE (1u << 22)
#define RCC_PLLCFGR_PLLQ(q) ((uint32_t)(q) << 24)   /* 2..15 */
#define RCC_PLLCFGR_PLLR(r) ((uint32_t)(r) << 28)   /* 2..7 */
#define RCC_CFGR REG32(RCC_BASE + 0x08u)
#define RCC_CFGR_SW_MASK (3u << 0)
#define RCC_CFGR_SW_PLL (2u << 0)                   /* PLL_P */
#define RCC_CFGR_SWS_MASK (3u << 2)
#define RCC_CFGR_SWS_PLL (2u << 2)
#define RCC_CFGR_HPRE_DIV1 (0u << 4)
#define RCC_CFGR_PPRE1_DIV4 (5u << 10)
#define RCC_CFGR_PPRE2_DIV2 (4u << 13)
#define RCC_APB1RSTR REG32(RCC_BASE + 0x20u)
#define RCC_AHB1ENR REG32(RCC_BASE + 0x30u)
#define RCC_AHB1ENR_GPIOAEN (1u << 0)
#define RCC_AHB1ENR_GPIOBEN (1u << 1)
#define RCC_APB1ENR REG32(RCC_BASE + 0x40u)
#define RCC_APB1_CAN1 (1u << 25)                    /* CAN1EN / CAN1RST */
#define RCC_APB1ENR_PWREN (1u << 28)

/* --- GPIO (RM0390 7.4) ---------------------------------------------------- */
#define GPIOA_BASE 0x40020000u
#define GPIOB_BASE 0x40020400u
#define GPIO_MODER(p) REG32((p) + 0x00u)            /* 2 bits a pin: 01 output, 10 alternate */
#define GPIO_OSPEEDR(p) REG32((p) + 0x08u)
#define GPIO_PUPDR(p) REG32((p) + 0x0Cu)            /* 2 bits a pin: 01 pull-up */
#define GPIO_ODR(p) REG32((p) + 0x14u)
#define GPIO_BSRR(p) REG32((p) + 0x18u)
#define GPIO_AFRL(p) REG32((p) + 0x20u)             /* pins 0..7, 4 bits each */
#define GPIO_AFRH(p) REG32((p) + 0x24u)             /* pins 8..15 */

/* --- bxCAN 1 (RM0390 30.9) ------------------------------------------------ */
#define CAN1_BASE 0x40006400u
#define CAN_MCR REG32(CAN1_BASE + 0x000u)
#define CAN_MCR_INRQ (1u << 0)
#define CAN_MCR_SLEEP (1u << 1)
#define CAN_MCR_TXFP (1u << 2)    /* transmit in request order, not by identifier */
#define CAN_MCR_NART (1u << 4)    /* 1: no automatic retransmission */
#define CAN_MCR_ABOM (1u << 6)    /* automatic bus-off recovery */
#define CAN_MCR_RESET (1u << 15)
#define CAN_MCR_DBF (1u << 16)    /* freeze while the core is halted by a debugger */
#define CAN_MSR REG32(CAN1_BASE + 0x004u)
#define CAN_MSR_INAK (1u << 0)
#define CAN_MSR_SLAK (1u << 1)
#define CAN_TSR REG32(CAN1_BASE + 0x008u)
#define CAN_TSR_CODE_SHIFT 24
#define CAN_TSR_TME_ANY (7u << 26) /* TME0..TME2 */
#define CAN_RF0R REG32(CAN1_BASE + 0x00Cu)
#define CAN_RF0R_FMP0_MASK 3u
#define CAN_RF0R_FULL0 (1u << 3)
#define CAN_RF0R_FOVR0 (1u << 4)
#define CAN_RF0R_RFOM0 (1u << 5)
#define CAN_IER REG32(CAN1_BASE + 0x014u)
#define CAN_IER_FMPIE0 (1u << 1)
#define CAN_ESR REG32(CAN1_BASE + 0x018u)
#define CAN_ESR_EPVF (1u << 1)
#define CAN_ESR_BOFF (1u << 2)
#define CAN_BTR REG32(CAN1_BASE + 0x01Cu)
#define CAN_BTR_BRP(v) ((uint32_t)((v) - 1u) << 0)   /* prescaler 1..1024 */
#define CAN_BTR_TS1(v) ((uint32_t)((v) - 1u) << 16)  /* 1..16 tq */
#define CAN_BTR_TS2(v) ((uint32_t)((v) - 1u) << 20)  /* 1..8 tq */
#define CAN_BTR_SJW(v) ((uint32_t)((v) - 1u) << 24)  /* 1..4 tq */
/* Mailbox identifier register layout, TX and RX alike. */
#define CAN_ID_TXRQ (1u << 0)
#define CAN_ID_RTR (1u << 1)
#define CAN_ID_IDE (1u << 2)
#define CAN_ID_STID_SHIFT 21
#define CAN_ID_EXID_SHIFT 3
#define CAN_TIR(n) REG32(CAN1_BASE + 0x180u + 0x10u * (n))
#define CAN_TDTR(n) REG32(CAN1_BASE + 0x184u + 0x10u * (n))
#define CAN_TDLR(n) REG32(CAN1_BASE + 0x188u + 0x10u * (n))
#define CAN_TDHR(n) REG32(CAN1_BASE + 0x18Cu + 0x10u * (n))
#define CAN_RI0R REG32(CAN1_BASE + 0x1B0u)
#define CAN_RDT0R REG32(CAN1_BASE + 0x1B4u)
#define CAN_RDL0R REG32(CAN1_BASE + 0x1B8u)
#define CAN_RDH0R REG32(CAN1_BASE + 0x1BCu)
/* Filters (shared with CAN2, reached through CAN1 only). */
#define CAN_FMR REG32(CAN1_BASE + 0x200u)
#define CAN_FMR_FINIT (1u << 0)
#define CAN_FM1R REG32(CAN1_BASE + 0x204u)   /* 0: mask mode */
#define CAN_FS1R REG32(CAN1_BASE + 0x20Cu)   /* 1: one 32-bit filter */
#define CAN_FFA1R REG32(CAN1_BASE + 0x214u)  /* 0: FIFO0 */
#define CAN_FA1R REG32(CAN1_BASE + 0x21Cu)   /* 1: active */
#define CAN_FR1(bank) REG32(CAN1_BASE + 0x240u + 8u * (bank))
#define CAN_FR2(bank) REG32(CAN1_BASE + 0x244u + 8u * (bank))

/* Interrupt numbers (RM0390 table 38). */
#define IRQ_CAN1_RX0 20u

#endif
