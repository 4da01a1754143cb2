/* How this process was launched (include/brigade/launch.h): the launcher's variables say whether it is
 * one of several; MPI then says which. */
#include <stdlib.h>
#include <string.h>

#include "brigade/launch.h"
#include "brigade_config.h"
#include "internal.h"

#if BRG_HAVE_MPI
#include <mpi.h>
#endif

/* An integer variable of the environment, or -1 (unset or not a number). */
static long env_long(const char *name) {
    const char *v = getenv(name);
    if (!v || !*v) return -1;
    char *end = NULL;
    long x = strtol(v, &end, 10);
    return *end == '\0' && x >= 0 ? x : -1;
}

typedef struct launcher_vars {
    const char *name, *size, *rank, *local_rank;
} launcher_vars;

static const launcher_vars launchers[] = {
    {"mpirun", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_LOCAL_RANK"},
    {"srun", "SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID"},
    {"mpi", "PMI_SIZE", "PMI_RANK", "MPI_LOCALRANKID"},
};

int brg_launch_mpi_available(void) { return BRG_HAVE_MPI; }

brg_status brg_launch_init(brg_launch *out, brg_error *err) {
    if (!out) return brg__error_set(err, BRG_ERR_INVALID_ARGUMENT, "brg_launch_init: out is NULL");
    memset(out, 0, sizeof *out);
    out->world = out->local_world = 1;
    out->launcher = "none";
    const launcher_vars *found = NULL;
    long size = -1, rank = -1, local = -1;
    for (size_t i = 0; i < sizeof launchers / sizeof launchers[0] && !found; i++) {
        /* srun sets SLURM_PROCID for its tasks; a batch script alone has SLURM_NTASKS but is no task of a step */
        if (strcmp(launchers[i].name, "srun") == 0 && !getenv("SLURM_STEP_ID")) continue;
        size = env_long(launchers[i].size);
        rank = env_long(launchers[i].rank);
        if (size >= 1 && rank >= 0) {
            found = &launchers[i];
            local = env_long(launchers[i].local_rank);
        }
    }
    if (!found || size == 1) {
#if BRG_HAVE_MPI
        int initialized = 0;
        MPI_Initialized(&initialized);
        if (!initialized) return BRG_OK; /* alone */
#else
        return BRG_OK;
#endif
    }
    if (found && (rank >= size))
        return brg__error_set(err, BRG_ERR_TRANSPORT, "%s set %s=%ld but %s=%ld", found->name, found->rank, rank,
                              found->size, size);
#if !BRG_HAVE_MPI
    (void)local;
    return brg__error_set(err, BRG_ERR_UNSUPPORTED,
                          "launched by %s as rank %ld of %ld, but this brigade was built without MPI (install Open "
                          "MPI, libopenmpi-dev on Debian, and configure with -Dmpi=enabled)",
                          found->name, rank, size);
#else
    int initialized = 0, level = MPI_THREAD_SINGLE;
    MPI_Initialized(&initialized);
    if (!initialized) {
        int rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_SERIALIZED, &level);
        if (rc != MPI_SUCCESS)
            return brg__error_set(err, BRG_ERR_TRANSPORT, "MPI_Init_thread failed (error %d)%s%s", rc,
                                  found ? " under " : "", found ? found->name : "");
        out->mpi_initialized = 1;
    } else {
        MPI_Query_thread(&level);
    }
    if (level < MPI_THREAD_SERIALIZED) {
        brg_launch_finalize(out, 0);
        return brg__error_set(err, BRG_ERR_TRANSPORT,
                              "MPI gives thread level %d; brigade needs MPI_THREAD_SERIALIZED (%d) or above", level,
                              MPI_THREAD_SERIALIZED);
    }
    int mpi_rank = 0, mpi_size = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &mpi_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &mpi_size);
    if (found && (mpi_size != size || mpi_rank != rank)) {
        brg_launch_finalize(out, 1);
        return brg__error_set(err, BRG_ERR_TRANSPORT,
                              "%s started this process as rank %ld of %ld, but MPI sees rank %d of %d%s", found->name,
                              rank, size, mpi_rank, mpi_size,
                              mpi_size == 1 && strcmp(found->name, "srun") == 0
                                  ? " (this MPI has no Slurm support: launch with mpirun inside the allocation, or "
                                    "srun --mpi=pmix)"
                                  : "");
    }
    out->rank = mpi_rank;
    out->world = mpi_size;
    out->launcher = found ? found->name : "mpi";
    MPI_Comm node;
    if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, mpi_rank, MPI_INFO_NULL, &node) == MPI_SUCCESS) {
        MPI_Comm_rank(node, &out->local_rank);
        MPI_Comm_size(node, &out->local_world);
        MPI_Comm_free(&node);
    } else if (local >= 0) {
        out->local_rank = (int)local;
    }
    return BRG_OK;
#endif
}

void brg_launch_finalize(const brg_launch *l, int failed) {
#if BRG_HAVE_MPI
    if (!l || !l->mpi_initialized || failed) return;
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Finalize();
#else
    (void)l;
    (void)failed;
#endif
}
