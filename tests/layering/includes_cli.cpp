// Compiled by the layering tests: a header of a higher component (cli).
#include "cli/commands.h"
