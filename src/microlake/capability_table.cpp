#include "microlake/capability_table.h"

namespace malv::microlake {

const char* object_type_name(ObjectType type) {
  switch (type) {
    case ObjectType::kBuffer: return "buffer";
    case ObjectType::kStream: return "stream";
    case ObjectType::kEvent: return "event";
    case ObjectType::kKernel: return "kernel";
    case ObjectType::kDataset: return "dataset";
  }
  return "unknown object";
}

}  // namespace malv::microlake
