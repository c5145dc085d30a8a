/* The lane code of soc_ekf_pack.c, included by it once per instruction set
 * it is compiled for (not a header of its own: no include guard). The
 * includer defines LANE(name), which gives each function a name of its
 * instance, and LANE_ATTR, the instance's function attribute (empty for the
 * portable one, a GCC target attribute for the x86 ones). */

/* ---- bf_expf and bf_sqrtf, one lane, branch-free -------------------------- */

/* (float)k for |k| < 2^22, exactly: 1.5 * 2^23 + k has a unit last place,
 * so it is exact in its bits, and subtracting 1.5 * 2^23 leaves k. Written
 * so because GCC turns (float)(int)x into trunc(x) under
 * -fno-trapping-math, which with SSE4.1 or AVX is a call the loop's
 * if-conversion refuses. */
static inline LANE_ATTR float LANE(lane_itof)(int32_t k)
{
    bf_bits32_t b;
    b.u = 0x4b400000u + (uint32_t)k;
    return b.f - 12582912.0f;
}

static inline LANE_ATTR float LANE(lane_expf)(float x)
{
    const float ln2_hi = 0.693145751953125f;
    const float ln2_lo = 1.42860682030941723212e-6f;
    const float inv_ln2 = 1.44269504088896341f;
    int in_range = (x <= 88.0f) & (x >= -87.33f);   /* false for NaN */
    float xc = in_range ? x : 0.0f;              /* no float-to-int conversion of NaN */
    float kf = xc * inv_ln2, r, poly, res;
    /* Every operation unconditional, then selects: GCC will not if-convert
     * (so not vectorise) a loop that does floating-point arithmetic on one
     * side of a branch only, as it might raise an exception the source
     * would not. */
    int32_t k = (int32_t)(kf + (kf < 0.0f ? -0.5f : 0.5f)); /* a - b is a + (-b), exactly */
    bf_bits32_t b;
    kf = LANE(lane_itof)(k);              /* |k| <= 127 */
    r = (xc - kf * ln2_hi) - kf * ln2_lo;
    poly = 1.0f + r * (1.0f + r * (0.5f + r * (1.6666667e-1f + r * (4.1666668e-2f
           + r * (8.3333338e-3f + r * (1.3888889e-3f + r * 1.9841270e-4f))))));
    b.u = (uint32_t)(k + 127) << 23;
    res = poly * b.f;
    b.u = 0x7f800000u;
    res = x > 88.0f ? b.f : res;
    res = x < -87.33f ? 0.0f : res;
    return x != x ? x : res;
}

static inline LANE_ATTR float LANE(lane_sqrtf)(float x)
{
    /* bf_sqrtf: 0 for x <= 0 (and NaN), x for +inf, subnormals scaled by
     * 2^24 and the root by 2^-12. The special inputs are swapped for 1
     * first, so that every operation after is unconditional (GCC moves an
     * operation used on one path only onto that path, and then will not
     * if-convert the loop around it); the scale factors are built from
     * their exponent bits for the same reason (x * 1 is x, exactly). */
    float xg = ((x > 0.0f) & bf_isfinite(x)) ? x : 1.0f;
    uint32_t sub;
    float xs, y;
    bf_bits32_t b, scale;
    int i;
    b.f = xg;
    sub = b.u < 0x00800000u;                      /* subnormal (xg is positive) */
    scale.u = 0x3f800000u + sub * (24u << 23);    /* 2^24 or 1 */
    xs = xg * scale.f;
    b.f = xs;
    b.u = (b.u >> 1) + 0x1fc00000u;
    y = b.f;
    BF_UNROLL
    for (i = 0; i < 3; ++i) {
        y = 0.5f * (y + xs / y);
    }
    scale.u = 0x3f800000u - sub * (12u << 23);    /* 2^-12 or 1 */
    y = y * scale.f;
    y = bf_isfinite(x) ? y : x;
    return x > 0.0f ? y : 0.0f;
}

/* c ? a : b by bit masks: both values are loaded and the choice is data,
 * which GCC cannot turn back into a branch around a load (it would then not
 * vectorise the loop: the load might fault on the path that skipped it). */
static inline LANE_ATTR float LANE(lane_pick)(int32_t c, float a, float b)
{
    bf_bits32_t ua, ub;
    uint32_t m = (uint32_t)0 - (uint32_t)(c != 0);
    ua.f = a;
    ub.f = b;
    ua.u = (ua.u & m) | (ub.u & ~m);
    return ua.f;
}

static inline LANE_ATTR uint32_t LANE(lane_picki)(int32_t c, uint32_t a, uint32_t b)
{
    uint32_t m = (uint32_t)0 - (uint32_t)(c != 0);
    return (a & m) | (b & ~m);
}

static inline LANE_ATTR float LANE(lane_signf)(float v)
{
    return v > 0.0f ? 1.0f : (v < 0.0f ? -1.0f : 0.0f);
}

/* cell_model.c's grid_cell with an int32 index (the same value: 0 <= pos < 2^31). */
static inline LANE_ATTR int32_t LANE(lane_grid)(float x, float span, float kmax, float *w)
{
    float c = x > 0.0f ? (x < 1.0f ? x : 1.0f) : 0.0f;
    float pos = c * span;
    /* min(trunc(pos), kmax) as trunc(min(pos, kmax)): the same integer
     * (kmax is whole), and a float min vectorises where an int32 one needs
     * SSE4.1. */
    int32_t k = (int32_t)(pos < kmax ? pos : kmax);
    *w = pos - LANE(lane_itof)(k);        /* 0 <= k < BF_OCV_MAX_POINTS */
    return k;
}

/* bf_cell_rc_table on flat indices i0 = row t0, column k; i1 = row t1. */
static inline LANE_ATTR float LANE(lane_rc)(const float *tab, int32_t i0, int32_t i1, float wt, float w)
{
    return bf_lerp(bf_lerp(tab[i0], tab[i1], wt), bf_lerp(tab[i0 + 1], tab[i1 + 1], wt), w);
}

/* ---- one sample of one block -------------------------------------------------- */

/* The vector pass: everything of bf_soc_ekf_step but the rare repairs and
 * the final commit. Returns nonzero if any lane needs the scalar repair. */
static LANE_ATTR int32_t LANE(block_step)(block_t *restrict b, const ctx_t *restrict c, float dt, float cur_in, int32_t cur_ok)
{
    const bf_cell_params_t *p = c->p;
    const bf_soc_ekf_tuning_t *t = c->t;
    const float hold = t->hold_sigma_c_rate * dt * (1.0f / 3600.0f); /* as bf_soc_ekf_step */
    const float q_soc = t->q_soc_per_s * dt + hold * hold;
    const float q_irc = t->q_irc_A2_per_s * dt;
    const float q_hyst = t->q_hyst_per_s * dt;
    const float r_dt = dt > t->r_dt_min_s ? dt : t->r_dt_min_s;
    const float gate2 = t->gate_sigma * t->gate_sigma;
    const float i_max = p->i_max_A;
    const float eta_charge = p->eta_charge;
    int32_t any_rare = 0;
    int l;

    /* The current, the same test for every cell; in a loop of its own, as a
     * load on one side of a branch would stop the vectoriser. */
    if (cur_ok) {
        for (l = 0; l < LANES; ++l) {
            b->cur[l] = cur_in;
        }
    } else {
        for (l = 0; l < LANES; ++l) {
            b->cur[l] = b->s[F_LAST_I][l];
        }
    }

    for (l = 0; l < LANES; ++l) {
        uint32_t flags = 0u;
        float cur, temp, v;
        int32_t t0, k, v_ok;
        int32_t tr0, tr1, to0, to1, tt1;
        float w_rc, w_ocv;
        float lo, hi, wt;
        float cap_Ah, cap_As, eta, dz, tau1, tau2, gamma, a1, a2, ah, sg;
        float x0, x1, x2, x3, hs;
        float F[NX], P[NX][NX], H[NX], PH[NX], K[NX], AP[NX][NX], Pn[NX][NX];
        float ocv, docv, r0, r1, r2, m0, m, ohmic_V, eta_V, v_pred;
        float hph, r_meas, S, innov, nis, inv_S, u, xc[NX];
        int32_t rare = 0, rep = 0;
        int i, j;

        /* Inputs: a bad current is the last good one, a bad temperature the
         * last good one, a bad voltage skips the correction. */
        cur = b->cur[l];
        flags |= cur_ok ? 0u : BF_FLAG_CURRENT_INVALID;
        b->out[F_LAST_I][l] = cur;
        temp = b->temp[l];
        {
            int32_t t_ok = bf_isfinite(temp) & !(temp < TEMP_MIN_C) & !(temp > TEMP_MAX_C);
            temp = LANE(lane_pick)(t_ok, temp, b->s[F_LAST_T][l]);
            flags |= t_ok ? 0u : BF_FLAG_TEMP_INVALID;
            b->out[F_LAST_T][l] = temp;
        }
        v = b->v[l];
        v_ok = bf_isfinite(v) & !(v < c->v_lo) & !(v > c->v_hi);
        flags |= v_ok ? 0u : BF_FLAG_VOLTAGE_INVALID;

        /* bf_cell_locate: the temperature row by compares (temp is finite;
         * the thresholds of rows the search would not reach are never met). */
        t0 = 0;
        lo = c->temp_hi[0];
        hi = c->temp_hi[1];
        BF_UNROLL
        for (i = 1; i < BF_MAX_TEMPS - 1; ++i) {
            int32_t above = temp >= c->temp_thr[i];
            t0 += above;
            lo = above ? c->temp_hi[i] : lo;
            hi = above ? c->temp_hi[i + 1] : hi;
        }
        wt = (temp - lo) / (hi - lo);
        {
            int32_t top = temp >= c->temp_top;
            int32_t mid = temp > c->temp_bottom;
            t0 = (int32_t)LANE(lane_picki)(top, (uint32_t)c->t0_top, LANE(lane_picki)(mid, (uint32_t)t0, 0u));
            wt = LANE(lane_pick)(top, 1.0f, LANE(lane_pick)(mid, wt, 0.0f));
        }
        /* Flat indices of the rows (t1 = t0 + 1, or t0 with one row). */
        tr0 = t0 * BF_RC_MAX_POINTS;
        tr1 = tr0 + c->t_step * BF_RC_MAX_POINTS;
        to0 = t0 * BF_OCV_MAX_POINTS;
        to1 = to0 + c->t_step * BF_OCV_MAX_POINTS;
        tt1 = t0 + c->t_step;
        x0 = b->s[F_X0][l];
        k = LANE(lane_grid)(x0, c->rc_span, c->rc_kmaxf, &w_rc);

        /* Prediction. */
        cap_Ah = bf_lerp(p->capacity_Ah[t0], p->capacity_Ah[tt1], wt);
        cap_As = cap_Ah * SECONDS_PER_HOUR;
        eta = cur > 0.0f ? eta_charge : 1.0f;
        dz = eta * cur * dt / cap_As;
        tau1 = LANE(lane_rc)(c->tau1, tr0 + k, tr1 + k, wt, w_rc);
        tau2 = LANE(lane_rc)(c->tau2, tr0 + k, tr1 + k, wt, w_rc);
        gamma = bf_lerp(p->hyst_gamma[t0], p->hyst_gamma[tt1], wt);
        a1 = LANE(lane_expf)(-dt / tau1);
        a2 = LANE(lane_expf)(-dt / tau2);
        ah = LANE(lane_expf)(-bf_absf(dz * gamma));
        sg = LANE(lane_signf)(cur);

        x0 += dz;
        x1 = a1 * b->s[F_X1][l] + (1.0f - a1) * cur;
        x2 = a2 * b->s[F_X2][l] + (1.0f - a2) * cur;
        x3 = ah * b->s[F_X3][l] + (1.0f - ah) * sg;
        hs = LANE(lane_pick)(bf_absf(cur) > t->hyst_current_A, sg, b->s[F_HSIGN][l]);
        b->out[F_HSIGN][l] = hs;
        b->out[F_FAILS][l] = b->s[F_FAILS][l];
        flags |= ((x0 < 0.0f) | (x0 > 1.0f)) ? BF_FLAG_SOC_CLAMPED : 0u;
        x0 = bf_clampf(x0, 0.0f, 1.0f);    /* x0 itself when inside, NaN stays NaN */

        F[0] = 1.0f;
        F[1] = a1;
        F[2] = a2;
        F[3] = ah;
        BF_UNROLL
        for (i = 0; i < NX; ++i) {
            BF_UNROLL
            for (j = i; j < NX; ++j) {
                P[i][j] = b->s[prow[i][j]][l] * (F[i] * F[j]);
                P[j][i] = P[i][j];
            }
        }
        P[0][0] += q_soc;
        P[1][1] += q_irc;
        P[2][2] += q_irc;
        P[3][3] += q_hyst;

        /* Correction from the terminal voltage. */
        {
            /* bf_cell_ocv */
            int32_t ko = LANE(lane_grid)(x0, c->ocv_span, c->ocv_kmaxf, &w_ocv);
            float lo_o = bf_lerp(c->ocv[to0 + ko], c->ocv[to1 + ko], wt);
            float hi_o = bf_lerp(c->ocv[to0 + ko + 1], c->ocv[to1 + ko + 1], wt);
            docv = (hi_o - lo_o) * c->ocv_span;
            ocv = bf_lerp(lo_o, hi_o, w_ocv);
        }
        k = LANE(lane_grid)(x0, c->rc_span, c->rc_kmaxf, &w_rc);
        r0 = LANE(lane_rc)(c->r0, tr0 + k, tr1 + k, wt, w_rc);
        r1 = LANE(lane_rc)(c->r1, tr0 + k, tr1 + k, wt, w_rc);
        r2 = LANE(lane_rc)(c->r2, tr0 + k, tr1 + k, wt, w_rc);
        m0 = bf_lerp(p->hyst_m0_V[t0], p->hyst_m0_V[tt1], wt);
        m = bf_lerp(p->hyst_m_V[t0], p->hyst_m_V[tt1], wt);
        ohmic_V = r0 * cur + bf_lerp(p->rn_ohm[t0], p->rn_ohm[tt1], wt) * cur / (1.0f + p->rn_sat_per_A * bf_absf(cur));
        eta_V = ohmic_V + r1 * x1 + r2 * x2;
        v_pred = ocv + m0 * hs + m * x3 + eta_V;

        H[0] = docv;
        H[1] = r1;
        H[2] = r2;
        H[3] = m;
        hph = 0.0f;
        BF_UNROLL
        for (i = 0; i < NX; ++i) {
            PH[i] = 0.0f;
            BF_UNROLL
            for (j = 0; j < NX; ++j) {
                PH[i] += P[i][j] * H[j];
            }
            hph += H[i] * PH[i];
        }
        r_meas = (t->r_voltage_V2_s + t->r_overpotential_rel2_s * eta_V * eta_V) / r_dt;
        {
            float r_min = R_MIN_REL * hph;
            r_meas = r_meas < r_min ? r_min : r_meas;
        }
        S = hph + r_meas;
        {
            float dv = v - v_pred;
            innov = v_ok ? dv : 0.0f;
        }
        nis = innov * innov / S;
        {
            /* Inflate R so that the innovation sits on the gate. */
            int32_t gated = v_ok & (nis > gate2);
            float S_gate = innov * innov / gate2;
            float r_gate = S_gate - hph;
            S = gated ? S_gate : S;
            r_meas = gated ? r_gate : r_meas;
            flags |= gated ? BF_FLAG_GATED : 0u;
        }
        inv_S = 1.0f / S;
        BF_UNROLL
        for (i = 0; i < NX; ++i) {
            K[i] = PH[i] * inv_S;
        }
        xc[0] = x0 + K[0] * innov;
        xc[1] = x1 + K[1] * innov;
        xc[2] = x2 + K[2] * innov;
        xc[3] = x3 + K[3] * innov;
        BF_UNROLL
        for (i = 0; i < NX; ++i) {
            BF_UNROLL
            for (j = 0; j < NX; ++j) {
                AP[i][j] = P[i][j] - K[i] * PH[j];
            }
        }
        BF_UNROLL
        for (i = 0; i < NX; ++i) {
            u = 0.0f;
            BF_UNROLL
            for (j = 0; j < NX; ++j) {
                u += AP[i][j] * H[j];
            }
            BF_UNROLL
            for (j = 0; j < NX; ++j) {
                float joseph = AP[i][j] - u * K[j] + r_meas * K[i] * K[j];
                Pn[i][j] = v_ok ? joseph : P[i][j];
            }
        }
        {
            /* project_hyst (soc_ekf.c): h beyond its bound stays at it, the
             * rest of its correction to the states correlated with it. */
            float b_h = xc[3] > 0.0f ? 1.0f : -1.0f;
            int32_t beyond = v_ok & (bf_absf(xc[3]) > 1.0f) & (Pn[3][3] > 0.0f);
            float u_h = (b_h - xc[3]) / Pn[3][3];
            xc[0] = beyond ? xc[0] + Pn[0][3] * u_h : xc[0];
            xc[1] = beyond ? xc[1] + Pn[1][3] * u_h : xc[1];
            xc[2] = beyond ? xc[2] + Pn[2][3] * u_h : xc[2];
        }
        flags |= (v_ok & ((xc[0] < 0.0f) | (xc[0] > 1.0f))) ? BF_FLAG_SOC_CLAMPED : 0u;
        x0 = v_ok ? bf_clampf(xc[0], 0.0f, 1.0f) : x0;
        x1 = v_ok ? xc[1] : x1;
        x2 = v_ok ? xc[2] : x2;
        x3 = v_ok ? bf_clampf(xc[3], -1.0f, 1.0f) : x3;
        x1 = bf_clampf(x1, -i_max, i_max);
        x2 = bf_clampf(x2, -i_max, i_max);
        b->out[F_X0][l] = x0;
        b->out[F_X1][l] = x1;
        b->out[F_X2][l] = x2;
        b->out[F_X3][l] = x3;

        /* repair_covariance: symmetrise, then the cheap repairs here; a
         * variance above its ceiling or a correlation beyond CORR_MAX (square
         * roots) sends the lane to the scalar pass. */
        BF_UNROLL
        for (i = 0; i < NX; ++i) {
            BF_UNROLL
            for (j = i + 1; j < NX; ++j) {
                float cij = 0.5f * (Pn[i][j] + Pn[j][i]);
                Pn[i][j] = cij;
                Pn[j][i] = cij;
            }
        }
        BF_UNROLL
        for (i = 0; i < NX; ++i) {
            float d = Pn[i][i];
            int32_t bad = !bf_isfinite(d);
            int32_t low = d < c->floor_[i];
            rare |= d > c->ceiling[i];
            rep |= bad | low;
            BF_UNROLL
            for (j = 0; j < NX; ++j) {
                Pn[i][j] = LANE(lane_pick)(bad, 0.0f, Pn[i][j]);
                Pn[j][i] = LANE(lane_pick)(bad, 0.0f, Pn[j][i]);
            }
            Pn[i][i] = LANE(lane_pick)(bad, c->ceiling[i], LANE(lane_pick)(low, c->floor_[i], d));
        }
        BF_UNROLL
        for (i = 0; i < NX; ++i) {
            BF_UNROLL
            for (j = i + 1; j < NX; ++j) {
                float cij = Pn[i][j];
                float lim2 = CORR_MAX * CORR_MAX * (Pn[i][i] * Pn[j][j]);
                float c2 = cij * cij;
                int32_t bad = !bf_isfinite(cij);
                rare |= !bad & (c2 > lim2);
                rep |= bad;
                b->out[prow[i][j]][l] = LANE(lane_pick)(bad, 0.0f, cij);
            }
            b->out[prow[i][i]][l] = Pn[i][i];
        }
        flags |= rep ? BF_FLAG_COV_REPAIRED : 0u;
        /* A state that is not finite: bf_soc_ekf_step fails, so the scalar
         * pass too. */
        {
            /* x - x is 0 for a finite x and NaN otherwise (written so because
             * GCC turns the bit test of bf_isfinite on selected values into
             * selects of booleans, which it then cannot vectorise). */
            float z = ((x0 - x0) + (x1 - x1)) + ((x2 - x2) + (x3 - x3));
            rare |= !(z == 0.0f);
        }
        b->flags[l] = flags;
        b->soc[l] = x0;
        b->sigma[l] = LANE(lane_sqrtf)(b->out[F_P00][l]);
        b->rare[l] = rare;
        any_rare |= rare;
    }
    return any_rare;
}

/* The scalar pass: the lanes block_step could not finish (a repair that
 * needs square roots, or a step that fails) go through bf_soc_ekf_step
 * itself, from the state they had. Returns the lanes whose step failed
 * (BF_E_NUMERIC: that lane keeps its state, as the single-cell step leaves
 * it, and counts the failure), bit l for lane l. */
static LANE_ATTR uint32_t LANE(block_rare)(block_t *b, const bf_cell_params_t *p, const bf_soc_ekf_tuning_t *t,
                                           float dt, float cur_in)
{
    uint32_t failed = 0u;
    int l, i, j, f;
    for (l = 0; l < LANES; ++l) {
        bf_soc_ekf_t s;
        bf_soc_ekf_out_t o;
        bf_status_t st;
        if (!b->rare[l]) {
            continue;
        }
        for (i = 0; i < NX; ++i) {
            s.x[i] = b->s[F_X0 + i][l];
            for (j = 0; j < NX; ++j) {
                s.P[i][j] = b->s[prow[i][j]][l];
            }
        }
        s.last_current_A = b->s[F_LAST_I][l];
        s.last_temp_C = b->s[F_LAST_T][l];
        s.hyst_sign = b->s[F_HSIGN][l];
        st = bf_soc_ekf_step(&s, p, t, dt, cur_in, b->v[l], b->temp[l], &o);
        for (f = 0; f < NX; ++f) {
            b->out[F_X0 + f][l] = s.x[f];
        }
        for (i = 0; i < NX; ++i) {
            for (j = i; j < NX; ++j) {
                b->out[prow[i][j]][l] = s.P[i][j];
            }
        }
        b->out[F_LAST_I][l] = s.last_current_A;
        b->out[F_LAST_T][l] = s.last_temp_C;
        b->out[F_HSIGN][l] = s.hyst_sign;
        b->soc[l] = o.soc;
        b->sigma[l] = o.soc_sigma;
        b->out[F_FAILS][l] = b->s[F_FAILS][l] + (st == BF_OK ? 0.0f : 1.0f);
        b->flags[l] = o.flags;
        failed |= (uint32_t)(st != BF_OK) << l;
    }
    return failed;
}

static LANE_ATTR void LANE(store_lanes)(float *dst, const float *src, size_t nv)
{
    size_t l;
    if (nv == (size_t)LANES) {
        for (l = 0; l < (size_t)LANES; ++l) {
            dst[l] = src[l];
        }
    } else {
        for (l = 0; l < (size_t)LANES; ++l) {
            if (l < nv) {
                dst[l] = src[l];
            }
        }
    }
}

/* Every sample of every cell; returns nonzero if a cell's step failed. */
static LANE_ATTR int32_t LANE(run_steps)(bf_soc_ekf_pack_t *pk, const ctx_t *cp, const float *dt_s,
                                         const float *current_A, const float *voltage_V, const float *temp_C,
                                         size_t n, float *soc_out, float *sigma_out, uint8_t *flags_out)
{
    const bf_cell_params_t *p = cp->p;
    const bf_soc_ekf_tuning_t *t = cp->t;
    const size_t N = pk->n_cells;
    ctx_t c = *cp;
    block_t b;
    size_t k, c0;
    int32_t any_bad = 0;
    for (k = 0; k < n; ++k) {
        const float dt = dt_s[k];
        const float cur = current_A[k];
        const int32_t dt_ok = bf_isfinite(dt) && !(dt < 0.0f) && !(dt > t->dt_max_s);
        const int32_t cur_ok = bf_isfinite(cur) && !(bf_absf(cur) > p->i_max_A);
        const size_t row = k * N;
        for (c0 = 0; c0 < N; c0 += LANES) {
            /* A short last block repeats its first cell in the spare lanes.
             * The copies are written with a constant count (and, for a short
             * block, a test per lane) so that no optimiser turns them into
             * calls to memcpy, which the core must not need. */
            const size_t nv = N - c0 < (size_t)LANES ? N - c0 : (size_t)LANES;
            const int full = nv == (size_t)LANES;
            size_t l;
            int f;
            for (f = 0; f < NF; ++f) {
                const float *src = pk->data + (size_t)f * N + c0;
                if (full) {
                    for (l = 0; l < (size_t)LANES; ++l) {
                        b.s[f][l] = src[l];
                    }
                } else {
                    for (l = 0; l < (size_t)LANES; ++l) {
                        b.s[f][l] = src[l < nv ? l : 0u];
                    }
                }
            }
            if (full) {
                for (l = 0; l < (size_t)LANES; ++l) {
                    b.v[l] = voltage_V[row + c0 + l];
                    b.temp[l] = temp_C[row + c0 + l];
                }
            } else {
                for (l = 0; l < (size_t)LANES; ++l) {
                    b.v[l] = voltage_V[row + c0 + (l < nv ? l : 0u)];
                    b.temp[l] = temp_C[row + c0 + (l < nv ? l : 0u)];
                }
            }
            {
                /* A refused interval restarts every cell: the single-cell
                 * step does that, so every lane takes the scalar pass. */
                int rare = 1;
                if (dt_ok) {
                    rare = LANE(block_step)(&b, &c, dt, cur, cur_ok) != 0;
                } else {
                    for (l = 0; l < (size_t)LANES; ++l) {
                        b.rare[l] = 1;
                    }
                }
                if (rare) {
                    /* Spare lanes of a short block do not count. */
                    uint32_t failed = LANE(block_rare)(&b, p, t, dt, cur);
                    any_bad |= (failed & ((1u << nv) - 1u)) != 0u;
                }
                for (f = 0; f < NF; ++f) {
                    float *dst = pk->data + (size_t)f * N + c0;
                    if (full) {
                        for (l = 0; l < (size_t)LANES; ++l) {
                            dst[l] = b.out[f][l];
                        }
                    } else {
                        for (l = 0; l < (size_t)LANES; ++l) {
                            if (l < nv) {
                                dst[l] = b.out[f][l];
                            }
                        }
                    }
                }
            }
            if (soc_out != 0) {
                LANE(store_lanes)(soc_out + row + c0, b.soc, nv);
            }
            if (sigma_out != 0) {
                LANE(store_lanes)(sigma_out + row + c0, b.sigma, nv);
            }
            if (flags_out != 0) {
                for (l = 0; l < (size_t)LANES; ++l) {
                    if (l < nv) {
                        flags_out[row + c0 + l] = (uint8_t)b.flags[l];
                    }
                }
            }
        }
    }
    return any_bad;
}
