/* Every public header of the core, from C++, linked against the C objects:
 * without the headers' extern "C" guards this fails to link (the C++ names
 * are mangled). Built and run by `make -C csrc cxx` (part of `check`). */
#include "bmsfil/bf_math.h"
#include "bmsfil/capacity.h"
#include "bmsfil/cell_model.h"
#include "bmsfil/health.h"
#include "bmsfil/plausibility.h"
#include "bmsfil/power.h"
#include "bmsfil/resistance.h"
#include "bmsfil/soc_ekf.h"
#include "bmsfil/soc_ekf_pack.h"
#include "bmsfil/status.h"
#include "bmsfil/thermal.h"

#include <cstdio>

int main()
{
    int failed = 0;
    failed += bf_cell_params_check(nullptr) != BF_E_NULL;
    failed += bf_soc_ekf_tuning_check(nullptr) != BF_E_NULL;
    failed += bf_plaus_config_check(nullptr) != BF_E_NULL;
    failed += bf_thermal_params_check(nullptr) != BF_E_NULL;
    failed += bf_capacity_tuning_check(nullptr) != BF_E_NULL;
    failed += bf_r0_tuning_check(nullptr) != BF_E_NULL;
    failed += bf_expf(0.0f) != 1.0f;
    std::printf("%d passed, %d failed\n", 7 - failed, failed);
    return failed != 0;
}
