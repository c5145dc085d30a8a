/* Status codes shared by every bmsfil C module. */
#ifndef BMSFIL_STATUS_H
#define BMSFIL_STATUS_H

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    BF_OK = 0,
    BF_E_NULL = 1,      /* a required pointer was NULL */
    BF_E_PARAMS = 2,    /* the parameter set failed bf_cell_params_check */
    BF_E_TUNING = 3,    /* the filter tuning failed bf_soc_ekf_tuning_check */
    BF_E_RANGE = 4,     /* an argument outside its documented range */
    BF_E_NUMERIC = 5,   /* the filter's covariance could not be kept valid */
    BF_E_CONFIG = 6     /* a monitor's config failed its check (bf_plaus_config_check) */
} bf_status_t;

#ifdef __cplusplus
}
#endif

#endif
