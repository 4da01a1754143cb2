/* brigade: pipeline model-parallel training engine. The umbrella header. */
#ifndef BRIGADE_H
#define BRIGADE_H

#include "brigade/status.h"
#include "brigade/graph.h"
#include "brigade/schedule.h"
#include "brigade/topology.h"
#include "brigade/models.h"
#include "brigade/data.h"
#include "brigade/train.h"
#include "brigade/plan.h"
#include "brigade/launch.h"

#endif
