/* brigade: how this process was launched, alone or as one rank of a job started by mpirun (Open MPI),
 * srun (Slurm) or another MPI launcher, and the MPI set-up a multi-process trainer needs.
 *
 *     brg_launch l;
 *     brg_error err = {0};
 *     if (brg_launch_init(&l, &err) != BRG_OK) { fprintf(stderr, "%s\n", err.message); return 1; }
 *     brg_train_options o = BRG_TRAIN_OPTIONS_INIT;
 *     o.stages = l.world;
 *     if (l.world > 1) o.hosting = BRG_HOSTING_MPI; // stage l.rank runs here
 *     ...
 *     brg_launch_finalize(&l, failed);
 */
#ifndef BRIGADE_LAUNCH_H
#define BRIGADE_LAUNCH_H

#include "brigade/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct brg_launch {
    int rank, world;             /* this process's rank in the job, and the job's processes (0 and 1 alone) */
    int local_rank, local_world; /* among the job's processes on this node (the local rank picks the GPU) */
    const char *launcher;        /* "none", "mpirun" (Open MPI), "srun" (Slurm) or "mpi" (another launcher) */
    int mpi_initialized;         /* brg_launch_init initialized MPI (and brg_launch_finalize ends it) */
} brg_launch;

/* Finds how this process was launched, from the launcher's variables (Open MPI's OMPI_COMM_WORLD_SIZE,
 * _RANK and _LOCAL_RANK; Slurm's SLURM_NTASKS, SLURM_PROCID and SLURM_LOCALID under srun; PMI_SIZE and
 * PMI_RANK), and when it is one of several, initializes MPI (MPI_Init_thread, MPI_THREAD_SERIALIZED
 * at least; or uses MPI as the application initialized it), whose rank and size then count (checked
 * against the launcher's). The local rank comes from MPI (the ranks sharing this node's memory).
 * Returns BRG_OK; BRG_ERR_UNSUPPORTED (launched as one of several processes by a build without MPI);
 * BRG_ERR_TRANSPORT (MPI could not start, gives too low a thread level, or disagrees with the launcher:
 * err says which). */
brg_status brg_launch_init(brg_launch *out, brg_error *err);

/* Ends MPI if brg_launch_init started it. After a failure pass failed = 1: MPI_Finalize waits for the
 * other ranks, which may never come, so it is skipped and the launcher ends the job when this process
 * exits with a non-zero status. */
void brg_launch_finalize(const brg_launch *l, int failed);

/* Whether this build has MPI (one process per rank). */
int brg_launch_mpi_available(void);

#ifdef __cplusplus
}
#endif
#endif
