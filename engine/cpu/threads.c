/* Per calling thread: how many threads the CPU kernels may use. */
#include "cpu.h"

static _Thread_local int kernel_threads = 1;

void brg__cpu_set_threads(int threads) { kernel_threads = threads >= 1 ? threads : 1; }

int brg__cpu_threads(void) { return kernel_threads; }
