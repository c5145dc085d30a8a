/* NUCLEO-F446RE: STM32F446RE at 180 MHz, frames on bxCAN1 (PB8 RX, PB9 TX).
 *
 * Clock: the ST-LINK's 8 MHz MCO on HSE bypass -> PLL (M 4, N 180, P 2)
 * -> SYSCLK 180 MHz with the regulator in over-drive, flash at 5 wait
 * states; AHB 180, APB1 45 (CAN), APB2 90 MHz. If the MCO is absent the
 * PLL runs from the 16 MHz HSI instead (same frequencies; CAN timing then
 * rests on the HSI's +-1 %, outside what CAN promises).
 *
 * CAN: 500 kbit/s from the 45 MHz APB1 clock, prescaler 5 (tq 111 ns),
 * 18 tq a bit: sync 1 + BS1 15 + BS2 2, sample point 88.9 %, SJW 2.
 * One filter bank passes every standard ID (extended ones are dropped in
 * hardware) into FIFO0; the controller leaves bus-off on its own (ABOM),
 * retransmits until acknowledged, and sends in request order (TXFP).
 *
 * Ticks: SysTick at SYSCLK with a 10 ms period; its interrupt extends the
 * 24-bit counter to 64 bits and is also the periodic wake-up that lets the
 * app send its heartbeat while no frame arrives. */
#include <stddef.h>
#include <stdint.h>

#include "fw/app.h"
#include "fw/board.h"
#include "stm32f446.h"

#define SYSCLK_HZ 180000000u
#define APB1_HZ 45000000u
#define SYSTICK_PERIOD (SYSCLK_HZ / 100u)    /* 10 ms, below SysTick's 2^24 */

#define CAN_BITRATE 500000u
#define CAN_PRESCALER 5u
#define CAN_TQ_BS1 15u
#define CAN_TQ_BS2 2u
#define CAN_TQ_SJW 2u
#define CAN_SEND_TIMEOUT_MS 20u

/* poll()/send() results below zero. */
#define CAN_ERR_OVERRUN (-1)        /* FIFO0 overran: at least one frame lost */
#define CAN_ERR_BUS_OFF (-2)        /* entered bus-off (ABOM brings it back) */
#define CAN_ERR_PASSIVE (-3)        /* entered error-passive */
#define CAN_ERR_TIMEOUT (-4)        /* no TX mailbox freed within CAN_SEND_TIMEOUT_MS */
#define CAN_ERR_FRAME (-5)          /* dlc above 8 */

#define LED_PIN 5u                  /* LD2 on PA5 */

/* Cycles for the bounded waits on clock and CAN hardware (tens of ms at
 * 16 MHz, a few ms at 180 MHz). */
#define SPIN_LIMIT 400000u

typedef char check_can_timing[(APB1_HZ / (CAN_PRESCALER * (1u + CAN_TQ_BS1 + CAN_TQ_BS2)) == CAN_BITRATE &&
                               APB1_HZ % (CAN_PRESCALER * (1u + CAN_TQ_BS1 + CAN_TQ_BS2)) == 0u)
                                  ? 1 : -1];
/* The app keeps its state in the retained region (24 KB in link.ld). */
typedef char check_retained_fits[sizeof(fw_saved_t) <= 24576u ? 1 : -1];

const char board_name[] = "nucleo-f446re";

extern uint8_t __retained_start[], __retained_end[];

static volatile uint64_t systick_periods;
static uint32_t can_state_reported;       /* ESR BOFF|EPVF as last reported by poll() */

/* --- helpers ---------------------------------------------------------------- */

static int wait_bits(volatile uint32_t *reg, uint32_t mask, uint32_t want)
{
    uint32_t n = SPIN_LIMIT;
    while ((*reg & mask) != want) {
        if (n-- == 0u) return -1;
    }
    return 0;
}

static void led_toggle(void)
{
    GPIO_ODR(GPIOA_BASE) ^= 1u << LED_PIN;
}

/* The clock could not be brought up: blink LD2 fast for ever. */
static void board_panic(void) __attribute__((noreturn));
static void board_panic(void)
{
    for (;;) {
        volatile uint32_t n;
        led_toggle();
        for (n = 0; n < 200000u; n++) {
        }
    }
}

/* --- clock -------------------------------------------------------------------- */

static void clock_init(void)
{
    uint32_t source;

    RCC_APB1ENR |= RCC_APB1ENR_PWREN;
    (void)RCC_APB1ENR;                       /* the enable takes effect before PWR is touched */
    PWR_CR = (PWR_CR & ~(3u << 14)) | PWR_CR_VOS_SCALE1;

    /* HSEBYP may only change while the HSE is off. */
    RCC_CR |= RCC_CR_HSEBYP;
    RCC_CR |= RCC_CR_HSEON;
    if (wait_bits(&RCC_CR, RCC_CR_HSERDY, RCC_CR_HSERDY) == 0) {
        source = RCC_PLLCFGR_PLLSRC_HSE | RCC_PLLCFGR_PLLM(4);     /* 8 MHz / 4 = 2 MHz */
    } else {
        RCC_CR &= ~(RCC_CR_HSEON | RCC_CR_HSEBYP);
        source = RCC_PLLCFGR_PLLM(8);                               /* HSI 16 MHz / 8 = 2 MHz */
    }
    /* VCO 2 MHz x 180 = 360 MHz; P /2 = 180 MHz SYSCLK; Q /8 = 45 MHz and
     * R /2 = 180 MHz (48 MHz and I2S domains, unused). */
    RCC_PLLCFGR = source | RCC_PLLCFGR_PLLN(180) | RCC_PLLCFGR_PLLP_DIV2 | RCC_PLLCFGR_PLLQ(8) |
                  RCC_PLLCFGR_PLLR(2);
    RCC_CR |= RCC_CR_PLLON;

    /* Over-drive during the PLL lock (RM0390 5.1.4): needed above 168 MHz. */
    PWR_CR |= PWR_CR_ODEN;
    if (wait_bits(&PWR_CSR, PWR_CSR_ODRDY, PWR_CSR_ODRDY) != 0) board_panic();
    PWR_CR |= PWR_CR_ODSWEN;
    if (wait_bits(&PWR_CSR, PWR_CSR_ODSWRDY, PWR_CSR_ODSWRDY) != 0) board_panic();

    /* 5 wait states for 150..180 MHz at 2.7..3.6 V; prefetch and caches on. */
    FLASH_ACR = 5u | FLASH_ACR_PRFTEN | FLASH_ACR_ICEN | FLASH_ACR_DCEN;
    if ((FLASH_ACR & FLASH_ACR_LATENCY_MASK) != 5u) board_panic();
    RCC_CFGR = RCC_CFGR_HPRE_DIV1 | RCC_CFGR_PPRE1_DIV4 | RCC_CFGR_PPRE2_DIV2;   /* still on HSI */

    if (wait_bits(&RCC_CR, RCC_CR_PLLRDY, RCC_CR_PLLRDY) != 0) board_panic();
    RCC_CFGR = (RCC_CFGR & ~RCC_CFGR_SW_MASK) | RCC_CFGR_SW_PLL;
    if (wait_bits(&RCC_CFGR, RCC_CFGR_SWS_MASK, RCC_CFGR_SWS_PLL) != 0) board_panic();
}

/* --- pins ------------------------------------------------------------------------ */

static void gpio_init(void)
{
    RCC_AHB1ENR |= RCC_AHB1ENR_GPIOAEN | RCC_AHB1ENR_GPIOBEN;
    (void)RCC_AHB1ENR;

    /* PA5 (LD2): push-pull output, off. */
    GPIO_BSRR(GPIOA_BASE) = 1u << (LED_PIN + 16u);
    GPIO_MODER(GPIOA_BASE) = (GPIO_MODER(GPIOA_BASE) & ~(3u << (2u * LED_PIN))) | (1u << (2u * LED_PIN));

    /* PB8 CAN1_RX, PB9 CAN1_TX: alternate function 9. RX pulled up so that a
     * board without a transceiver sees an idle (recessive) bus. */
    GPIO_AFRH(GPIOB_BASE) = (GPIO_AFRH(GPIOB_BASE) & ~0xFFu) | (9u << 0) | (9u << 4);
    GPIO_OSPEEDR(GPIOB_BASE) = (GPIO_OSPEEDR(GPIOB_BASE) & ~(0xFu << 16)) | (0xAu << 16);  /* fast */
    GPIO_PUPDR(GPIOB_BASE) = (GPIO_PUPDR(GPIOB_BASE) & ~(0xFu << 16)) | (1u << 16);
    GPIO_MODER(GPIOB_BASE) = (GPIO_MODER(GPIOB_BASE) & ~(0xFu << 16)) | (0xAu << 16);
}

/* --- ticks ------------------------------------------------------------------------ */

void SysTick_Handler(void)
{
    systick_periods++;
}

static void systick_init(void)
{
    SYST_RVR = SYSTICK_PERIOD - 1u;
    SYST_CVR = 0u;
    SYST_CSR = SYST_CSR_CLKSOURCE_CPU | SYST_CSR_TICKINT | SYST_CSR_ENABLE;
}

uint64_t board_ticks(void)
{
    uint32_t primask, cvr;
    uint64_t periods;
    __asm volatile("mrs %0, primask\n\tcpsid i" : "=r"(primask)::"memory");
    periods = systick_periods;
    cvr = SYST_CVR;
    /* The counter reached 0 (a new period begins there) but the interrupt
     * has not run yet: masked here, or the caller runs at its priority. */
    if ((SCB_ICSR & SCB_ICSR_PENDSTSET) != 0u || cvr == 0u) {
        periods++;
        cvr = SYST_CVR;
    }
    __asm volatile("msr primask, %0" ::"r"(primask) : "memory");
    return periods * SYSTICK_PERIOD + (cvr == 0u ? 0u : SYSTICK_PERIOD - cvr);
}

uint32_t board_tick_hz(void)
{
    return SYSCLK_HZ;
}

uint32_t board_ticks_to_instructions(uint64_t ticks)
{
    (void)ticks;
    return 0;    /* real silicon: cycles are known, instructions are not */
}

/* --- CAN ---------------------------------------------------------------------------- */

void CAN1_RX0_IRQHandler(void)
{
    /* Only wakes the core: poll() drains FIFO0, board_wait_for_event()
     * re-arms the interrupt. */
    CAN_IER &= ~CAN_IER_FMPIE0;
}

static void can_init(void)
{
    RCC_APB1ENR |= RCC_APB1_CAN1;
    (void)RCC_APB1ENR;
    RCC_APB1RSTR |= RCC_APB1_CAN1;
    RCC_APB1RSTR &= ~RCC_APB1_CAN1;

    /* Out of sleep, into initialisation. */
    CAN_MCR = CAN_MCR_INRQ;
    (void)wait_bits(&CAN_MSR, CAN_MSR_INAK | CAN_MSR_SLAK, CAN_MSR_INAK);
    CAN_MCR = CAN_MCR_INRQ | CAN_MCR_ABOM | CAN_MCR_TXFP | CAN_MCR_DBF;   /* NART clear: retransmit */
    CAN_BTR = CAN_BTR_BRP(CAN_PRESCALER) | CAN_BTR_TS1(CAN_TQ_BS1) | CAN_BTR_TS2(CAN_TQ_BS2) |
              CAN_BTR_SJW(CAN_TQ_SJW);

    /* Bank 0: one 32-bit mask filter, only the IDE bit compared (must be 0). */
    CAN_FMR |= CAN_FMR_FINIT;
    CAN_FA1R &= ~1u;
    CAN_FS1R |= 1u;
    CAN_FM1R &= ~1u;
    CAN_FFA1R &= ~1u;
    CAN_FR1(0) = 0u;
    CAN_FR2(0) = CAN_ID_IDE;
    CAN_FA1R |= 1u;
    CAN_FMR &= ~CAN_FMR_FINIT;

    /* Leave initialisation: the controller joins once it has seen 11
     * recessive bits, which may be later (no bus yet), so do not insist. */
    CAN_MCR &= ~CAN_MCR_INRQ;
    (void)wait_bits(&CAN_MSR, CAN_MSR_INAK, 0u);

    can_state_reported = 0u;
    CAN_IER = CAN_IER_FMPIE0;
    NVIC_ISER(IRQ_CAN1_RX0 / 32u) = 1u << (IRQ_CAN1_RX0 % 32u);
}

static int can_poll(void *ctx, fw_frame_t *f)
{
    uint32_t rf, state, entered, rir, rdt, lo, hi, i;
    (void)ctx;

    rf = CAN_RF0R;
    if (rf & CAN_RF0R_FOVR0) {
        CAN_RF0R = CAN_RF0R_FOVR0;    /* rc_w1: clears only the overrun flag */
        return CAN_ERR_OVERRUN;
    }
    /* Error states cannot be cleared by software: report each entry once. */
    state = CAN_ESR & (CAN_ESR_BOFF | CAN_ESR_EPVF);
    entered = state & ~can_state_reported;
    can_state_reported = state;
    if (entered & CAN_ESR_BOFF) return CAN_ERR_BUS_OFF;
    if (entered & CAN_ESR_EPVF) return CAN_ERR_PASSIVE;

    if ((rf & CAN_RF0R_FMP0_MASK) == 0u) return 0;
    rir = CAN_RI0R;
    rdt = CAN_RDT0R;
    lo = CAN_RDL0R;
    hi = CAN_RDH0R;
    CAN_RF0R = CAN_RF0R_RFOM0;
    /* Released once RFOM0 reads 0 again; reading before that would return
     * the same frame twice. */
    (void)wait_bits(&CAN_RF0R, CAN_RF0R_RFOM0, 0u);

    f->extended = (rir & CAN_ID_IDE) ? 1u : 0u;
    f->remote = (rir & CAN_ID_RTR) ? 1u : 0u;
    f->id = f->extended ? (rir >> CAN_ID_EXID_SHIFT) & 0x1FFFFFFFu : (rir >> CAN_ID_STID_SHIFT) & 0x7FFu;
    f->dlc = (uint8_t)((rdt & 0xFu) > 8u ? 8u : (rdt & 0xFu));
    for (i = 0; i < 4u; i++) {
        f->data[i] = (uint8_t)(lo >> (8u * i));
        f->data[4u + i] = (uint8_t)(hi >> (8u * i));
    }
    for (i = f->dlc; i < 8u; i++) f->data[i] = 0u;
    led_toggle();
    return 1;
}

static int can_send(void *ctx, const fw_frame_t *f)
{
    const uint64_t limit = (uint64_t)SYSCLK_HZ / 1000u * CAN_SEND_TIMEOUT_MS;
    uint64_t t0;
    uint32_t box, tir, lo = 0u, hi = 0u, i;
    (void)ctx;

    if (f->dlc > 8u) return CAN_ERR_FRAME;
    if (CAN_ESR & CAN_ESR_BOFF) return CAN_ERR_BUS_OFF;
    t0 = board_ticks();
    while ((CAN_TSR & CAN_TSR_TME_ANY) == 0u) {
        if (CAN_ESR & CAN_ESR_BOFF) return CAN_ERR_BUS_OFF;
        if (board_ticks() - t0 > limit) return CAN_ERR_TIMEOUT;
    }
    box = (CAN_TSR >> CAN_TSR_CODE_SHIFT) & 3u;   /* the next empty mailbox */
    if (box > 2u) return CAN_ERR_TIMEOUT;

    tir = f->extended ? (((f->id & 0x1FFFFFFFu) << CAN_ID_EXID_SHIFT) | CAN_ID_IDE)
                      : ((f->id & 0x7FFu) << CAN_ID_STID_SHIFT);
    if (f->remote) tir |= CAN_ID_RTR;
    for (i = 0; i < 4u; i++) {
        lo |= (uint32_t)f->data[i] << (8u * i);
        hi |= (uint32_t)f->data[4u + i] << (8u * i);
    }
    CAN_TDTR(box) = f->dlc;
    CAN_TDLR(box) = lo;
    CAN_TDHR(box) = hi;
    CAN_TIR(box) = tir | CAN_ID_TXRQ;
    return 0;
}

static const fw_transport_t can_transport = {can_poll, can_send, NULL};

const fw_transport_t *board_transport(void)
{
    return &can_transport;
}

/* --- the rest of the board API -------------------------------------------------------- */

void board_init(void)
{
    gpio_init();              /* first: board_panic() blinks LD2 */
    DBGMCU_CR |= DBGMCU_CR_DBG_SLEEP;
    clock_init();
    systick_init();
    can_init();
}

void board_wait_for_event(void)
{
    /* With interrupts masked, WFI still wakes on a pending interrupt, which
     * is then taken at cpsie: nothing that arrives after the check is lost. */
    __asm volatile("cpsid i" ::: "memory");
    CAN_IER |= CAN_IER_FMPIE0;
    if ((CAN_RF0R & (CAN_RF0R_FMP0_MASK | CAN_RF0R_FOVR0)) == 0u &&
        ((CAN_ESR & (CAN_ESR_BOFF | CAN_ESR_EPVF)) & ~can_state_reported) == 0u)
        __asm volatile("dsb\n\twfi" ::: "memory");
    __asm volatile("cpsie i" ::: "memory");
}

void *board_retained(size_t *size_bytes)
{
    *size_bytes = (size_t)(__retained_end - __retained_start);
    return __retained_start;
}

void board_reset(void)
{
    __asm volatile("dsb" ::: "memory");
    SCB_AIRCR = SCB_AIRCR_SYSRESETREQ_KEYED | (SCB_AIRCR & 0x700u);   /* keep PRIGROUP */
    __asm volatile("dsb" ::: "memory");
    for (;;) {
    }
}
