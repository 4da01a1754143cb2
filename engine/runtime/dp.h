/* Data parallelism for one rank: its stages' gradients summed with the same stages of the other
 * replicas (its data-parallel group), in buckets posted while backward still runs, and optionally ZeRO-1
 * (the AdamW moments split across the group). Internal.
 *
 * Buckets. The rank's parameter gradients live in one flat buffer (the stages' gradients are views into
 * it: no copy, no memory of its own), laid out in the order the last micro-batch's backward finishes them
 * (virtual stages from the last, ops from the last); buckets are ranges of exactly bucket_bytes of it (a
 * large parameter spans several, so no reduction needs more scratch than a bucket). A bucket is posted
 * (all-reduce, or reduce-scatter under ZeRO-1) as soon as every gradient in it is final
 * (brg__dp_grad_ready, from the stage's backward hook), and the transport moves it while backward goes
 * on (brg__dp_progress between instructions). Parameters tied across pipeline stages are summed over
 * their stages first (at the step's end), so they go in a last region of buckets posted then.
 *
 * ZeRO-1. Each bucket is cut into one contiguous part per member (brg__group_part); member i keeps the
 * moments of part i only, receives the sum of part i (reduce-scatter), updates those parameter elements,
 * and the updated values go to every member (all-gather). The global norm adds per parameter the
 * members' sums of squares over their parts, in member order, so every member clips alike. */
#ifndef BRIGADE_DP_H
#define BRIGADE_DP_H

#include <stdint.h>

#include "stage.h"
#include "transport/transport.h"

typedef struct brg__dp brg__dp;

/* One rank's data parallelism over `stages` (its virtual stages, ascending; n of them), in the group of
 * transport ranks `members` (the same pipeline rank of every replica, in replica order). tied[p] non-zero:
 * parameter p is summed across pipeline stages at the step's end (the last bucket). zero: ZeRO-1 (frees
 * the stages' moments of every parameter it shards). BRG_OK, BRG_ERR_OUT_OF_MEMORY, BRG_ERR_INVALID_ARGUMENT. */
brg_status brg__dp_create(brg__dp **out, brg__stage **stages, int n, const unsigned char *tied, brg__transport *tp,
                          brg__backend *be, const int *members, int size, int zero, int64_t bucket_bytes, char *msg);
void brg__dp_destroy(brg__dp *dp);

/* Called on parameter p's gradient (held by stage s) once it is final and before its bucket is posted, in
 * the same order on every member (tensor parallelism sums the shares' gradients of sequence-parallel
 * parameters there). */
typedef brg_status (*brg__dp_piece_hook)(void *ctx, brg__stage *s, int64_t p, char *msg);
void brg__dp_set_piece_hook(brg__dp *dp, brg__dp_piece_hook hook, void *ctx);

/* The step begins: nothing is ready or posted. */
void brg__dp_begin_step(brg__dp *dp);
/* Op `op` of stage s has finished its weight gradients of the last micro-batch: the parameters it read
 * first are final; full buckets are posted. */
brg_status brg__dp_grad_ready(brg__dp *dp, brg__stage *s, int64_t op, char *msg);
/* Moves posted buckets on without waiting. */
brg_status brg__dp_progress(brg__dp *dp, char *msg);
/* After the tied parameters' sums: posts the rest, waits for every bucket, and puts the sums in place
 * (every gradient, or under ZeRO-1 this member's parts). */
brg_status brg__dp_reduce(brg__dp *dp, char *msg);

/* ZeRO-1: the sum of squares of parameter p's gradient over every member's part (after brg__dp_reduce;
 * collective over the group: brg__dp_norm_partials first). */
brg_status brg__dp_norm_partials(brg__dp *dp, char *msg);
double brg__dp_sum_squares(const brg__dp *dp, int64_t p);
/* ZeRO-1: scales this member's gradient parts, runs AdamW on its parameter elements, and all-gathers the
 * updated parameters. Collective over the group. */
brg_status brg__dp_optimizer_step(brg__dp *dp, float grad_scale, float lr, float beta1, float beta2, float eps,
                                  float weight_decay, int step, char *msg);

int brg__dp_zero(const brg__dp *dp);
/* Bytes of AdamW moments this rank holds (its stages' and its shards'). */
int64_t brg__dp_moment_bytes(const brg__dp *dp);
int brg__dp_bucket_count(const brg__dp *dp);

/* ZeRO-1 and checkpoints: gathers every member's moment parts into full moments on each stage
 * (st->adam_m/adam_v, allocated here; collective), and frees them again. */
brg_status brg__dp_gather_moments(brg__dp *dp, char *msg);
void brg__dp_release_moments(brg__dp *dp);
/* Sets this member's part of parameter p's moments (held by stage s) from full host arrays. */
brg_status brg__dp_set_moments(brg__dp *dp, const brg__stage *s, int64_t p, const float *m, const float *v);

#endif
