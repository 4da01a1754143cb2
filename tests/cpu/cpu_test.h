/* Shared pieces of the CPU backend suite: the double-precision reference forward of every op, and the
 * checker that compares a kernel's forward and both backward passes with it. */
#ifndef BRIGADE_TEST_CPU_H
#define BRIGADE_TEST_CPU_H

#include <stdint.h>

#include "cpu/cpu.h"

/* out = forward of op in double, plain loops, BRG_BATCH bound to batch. in[i] holds F32 inputs (as
 * double), ids[i] the I32 ones; the other entry of each pair is NULL. */
void ref_forward(const brg__op *op, int64_t batch, double *const in[BRG__MAX_INPUTS],
                 const int32_t *const ids[BRG__MAX_INPUTS], double *out);

/* Worst relative errors found by check_op. */
typedef struct op_errors {
    double forward;
    double backward_input;  /* activation inputs' gradients against finite differences */
    double backward_weight; /* parameters' gradients against finite differences */
} op_errors;

/* Builds nothing: takes the op producing `out` in g, fills its inputs from `seed`, and checks with
 * CUnit assertions: the forward against ref_forward (relative 1e-5), every gradient of both backward
 * halves against central finite differences of the reference (relative 1e-3), accumulation into
 * pre-filled gradients, bitwise repeatability, and that NaN-filled output, aux and scratch are fully
 * overwritten or ignored. Prints one line of worst errors under `label`. */
op_errors check_op(const char *label, brg_graph *g, const brg_tensor *out, int64_t batch, uint64_t seed);

/* Takes the op producing `out` in g, fills its inputs from `seed`, and runs forward, backward-input and
 * backward-weight (into pre-filled gradients) with 1 kernel thread, then 2, 3 and 4: the output, aux and
 * every gradient must be bitwise the same each time (CUnit assertions). Leaves the calling thread at one
 * thread, its pool released. */
void check_op_threads(const char *label, brg_graph *g, const brg_tensor *out, int64_t batch, uint64_t seed);

/* Relative error with a floor: |a - b| / max(|a|, |b|, floor). */
double rel_error(double a, double b, double floor);

#endif
