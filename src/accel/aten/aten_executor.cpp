// The ATen executor (see aten_executor.h): decode-then-invoke of PyTorch
// operators over a VM's buffers.
#include "accel/aten/aten_executor.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/core/CPUAllocator.h>
#include <fmt/format.h>
#include <setjmp.h>
#include <signal.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <csignal>

#include "accel/aten/view_cache.h"

namespace malv::accel::aten {
namespace {

using wire::AtenTag;
using wire::AtenTensorArg;
using wire::AtenValue;

// Never allowed: what reaches outside the VM's memory or the CPU, or a
// layout the wire cannot describe.
constexpr std::array<std::string_view, 14> kAlwaysDenied{
    "cuda",   "cudnn",    "miopen",    "mkldnn",     "mps",       "vulkan",  "_nnpack",
    "sparse", "quantize", "from_file", "pin_memory", "is_pinned", "_fbgemm", "xnnpack"};

// The dtypes a tensor may have on the wire (c10::ScalarType codes).
bool supported_dtype(std::uint32_t code) {
  switch (static_cast<c10::ScalarType>(code)) {
    case c10::ScalarType::Byte:
    case c10::ScalarType::Char:
    case c10::ScalarType::Short:
    case c10::ScalarType::Int:
    case c10::ScalarType::Long:
    case c10::ScalarType::Half:
    case c10::ScalarType::Float:
    case c10::ScalarType::Double:
    case c10::ScalarType::Bool:
    case c10::ScalarType::ComplexFloat:
    case c10::ScalarType::ComplexDouble:
    case c10::ScalarType::BFloat16:
      return code <= static_cast<std::uint32_t>(c10::ScalarType::BFloat16);
    default: return false;
  }
}

std::string shape_text(c10::IntArrayRef sizes) {
  return fmt::format("[{}]", fmt::join(sizes, ", "));
}

Error invalid(std::string_view op, std::string message) {
  return Error(ErrorCode::kInvalidArgument, fmt::format("{}: {}", op, message));
}

// Where in a call a value is, for messages (formatted only on an error).
struct Place {
  std::string_view argument;  // its name, or "" for an output
  std::size_t output = 0;     // the output's index when argument is ""
  std::int64_t element = -1;  // its place in a list, or -1

  std::string text() const {
    std::string where = argument.empty() ? fmt::format("output {}", output)
                                         : fmt::format("argument '{}'", argument);
    if (element >= 0) where += fmt::format(" element {}", element);
    return where;
  }
};

// A tensor view over its buffer, checked: where its bytes are (into
// `spec`, which a slot holds: no copy of its sizes).
Status check_view(std::string_view op, const Place& place, const AtenTensorArg& t,
                  const ResolveBuffer& resolve, ViewSpec& spec) {
  if (!supported_dtype(t.dtype)) {
    return invalid(
        op, fmt::format("{}: dtype {} is not one the device carries", place.text(), t.dtype));
  }
  const auto dtype = static_cast<c10::ScalarType>(t.dtype);
  const std::uint64_t element = c10::elementSize(dtype);
  // The furthest element the view reaches, in elements from its offset.
  std::uint64_t reach = 0;
  bool empty = false;
  for (std::size_t d = 0; d < t.sizes.size(); ++d) {
    if (t.sizes[d] < 0 || t.strides[d] < 0) {
      return invalid(op, fmt::format("{}: dimension {} has size {} and stride {} (no negative "
                                     "sizes or strides)",
                                     place.text(), d, t.sizes[d], t.strides[d]));
    }
    if (t.sizes[d] == 0) empty = true;
    constexpr std::uint64_t kLimit = std::uint64_t{1} << 56;  // times 8 bytes: no overflow
    const std::uint64_t span = t.sizes[d] == 0 ? 0 : static_cast<std::uint64_t>(t.sizes[d] - 1);
    const auto stride = static_cast<std::uint64_t>(t.strides[d]);
    if (span != 0 && stride > (kLimit - reach) / span) {
      return Error(ErrorCode::kOutOfRange,
                   fmt::format("{}: {}: the view reaches past any buffer", op, place.text()));
    }
    reach += span * stride;
  }
  if (t.offset % element != 0) {
    return invalid(op, fmt::format("{}: byte offset {} is not a multiple of the element size {}",
                                   place.text(), t.offset, element));
  }
  MALV_ASSIGN_OR_RETURN(const BufferMemory memory, resolve(t.buffer));
  const std::uint64_t end = empty ? t.offset : t.offset + (reach + 1) * element;
  if (t.offset > memory.bytes || end > memory.bytes) {
    return Error(ErrorCode::kOutOfRange,
                 fmt::format("{}: {}: the view (offset {}, sizes {}, strides {}) reaches byte {} "
                             "of a buffer of {}",
                             op, place.text(), t.offset, shape_text(t.sizes), shape_text(t.strides),
                             end, memory.bytes));
  }
  spec.data = memory.data + t.offset;
  spec.dtype = dtype;
  spec.sizes.assign(t.sizes.begin(), t.sizes.end());
  spec.strides.assign(t.strides.begin(), t.strides.end());
  return ok_status();
}

bool is_tensor(const c10::TypePtr& type) { return type->kind() == c10::TypeKind::TensorType; }

// A tensor argument (or output) of a checked call: what the run binds in
// its place. Views become tensors only on the worker that runs the call
// (ViewCache), so no tensor is made, or freed, by the thread that checks.
struct TensorSlot {
  enum class Kind : std::uint8_t { kView, kAbsent, kCpuScalar };
  Kind kind = Kind::kView;
  bool output = false;    // index is an output's, not an argument's
  bool written = false;   // the operator writes it: a growable view, settled after
  bool in_list = false;   // an element of a Tensor[] or Tensor?[] argument
  bool optional = false;  // of a Tensor?[] argument
  std::uint32_t index = 0;
  ViewSpec view;  // kView
  // kCpuScalar: a 0-dim CPU tensor (dtype | kAtenWrappedNumber, the value).
  std::uint32_t scalar_flags = 0;
  std::int64_t scalar_i = 0;
  double scalar_d = 0;
};

// A CPU scalar passed as a 0-dim tensor (kCpuScalar), as PyTorch made it.
at::Tensor cpu_scalar(const TensorSlot& slot) {
  const auto dtype = static_cast<c10::ScalarType>(slot.scalar_flags & 0xffffu);
  at::Tensor t = c10::isFloatingType(dtype)
                     ? at::scalar_tensor(slot.scalar_d, at::TensorOptions().dtype(dtype))
                     : at::scalar_tensor(slot.scalar_i, at::TensorOptions().dtype(dtype));
  if ((slot.scalar_flags & wire::kAtenWrappedNumber) != 0)
    t.unsafeGetTensorImpl()->set_wrapped_number(true);
  return t;
}

// Checks a tensor value and adds its slot.
Status add_tensor_slot(std::string_view op, const Place& place, const AtenValue& v, std::size_t k,
                       TensorSlot slot, const ResolveBuffer& resolve,
                       c10::SmallVectorImpl<TensorSlot>& slots) {
  if (v.tag == AtenTag::kCpuScalar) {
    const std::uint32_t code = v.scalar_flags & 0xffffu;
    if (!supported_dtype(code)) {
      return invalid(op, fmt::format("{}: a scalar of dtype {} is not one the device carries",
                                     place.text(), code));
    }
    slot.kind = TensorSlot::Kind::kCpuScalar;
    slot.scalar_flags = v.scalar_flags;
    slot.scalar_i = v.i;
    slot.scalar_d = v.d;
  } else {
    slots.push_back(std::move(slot));
    Status checked = check_view(op, place, v.tensors[k], resolve, slots.back().view);
    if (!checked.ok()) slots.pop_back();
    return checked;
  }
  slots.push_back(std::move(slot));
  return ok_status();
}

// One argument: the record's value, checked against the argument's type.
// Tensors go to `slots` (their place in the stack holds None, or an empty
// list, until the run binds them).
Result<c10::IValue> to_ivalue(std::string_view op, const c10::Argument& argument,
                              std::uint32_t index, bool written, const c10::TypePtr& type,
                              const AtenValue& v, const ResolveBuffer& resolve,
                              c10::SmallVectorImpl<TensorSlot>& slots) {
  const Place place{.argument = argument.name()};
  auto wrong = [&](std::string_view expected) {
    return invalid(op, fmt::format("{} is a {}, the record has tag {}", place.text(), expected,
                                   static_cast<std::uint32_t>(v.tag)));
  };
  if (auto optional = type->cast<c10::OptionalType>()) {
    if (v.tag == AtenTag::kNone) return c10::IValue();
    return to_ivalue(op, argument, index, written, optional->getElementType(), v, resolve, slots);
  }
  switch (type->kind()) {
    case c10::TypeKind::TensorType: {
      if (v.tag != AtenTag::kTensor && v.tag != AtenTag::kCpuScalar) return wrong("Tensor");
      if (v.tag == AtenTag::kTensor && v.tensors.size() != 1) return wrong("Tensor");
      MALV_TRY(add_tensor_slot(
          op, place, v, 0,
          TensorSlot{.written = written && v.tag == AtenTag::kTensor, .index = index}, resolve,
          slots));
      return c10::IValue();
    }
    case c10::TypeKind::IntType:
    case c10::TypeKind::SymIntType:
      if (v.tag != AtenTag::kInt) return wrong("int");
      return c10::IValue(v.i);
    case c10::TypeKind::FloatType:
      if (v.tag != AtenTag::kDouble) return wrong("float");
      return c10::IValue(v.d);
    case c10::TypeKind::BoolType:
      if (v.tag != AtenTag::kBool) return wrong("bool");
      return c10::IValue(v.i != 0);
    case c10::TypeKind::NumberType:
      if (v.tag == AtenTag::kScalarInt) return c10::IValue(c10::Scalar(v.i));
      if (v.tag == AtenTag::kScalarDouble) return c10::IValue(c10::Scalar(v.d));
      if (v.tag == AtenTag::kScalarBool) return c10::IValue(c10::Scalar(v.i != 0));
      return wrong("Scalar");
    case c10::TypeKind::StringType:
      if (v.tag != AtenTag::kString) return wrong("str");
      return c10::IValue(v.text);
    case c10::TypeKind::ScalarTypeType:
      if (v.tag != AtenTag::kScalarType) return wrong("ScalarType");
      if (!supported_dtype(static_cast<std::uint32_t>(v.i))) {
        return invalid(
            op, fmt::format("{}: dtype {} is not one the device carries", place.text(), v.i));
      }
      return c10::IValue(v.i);
    case c10::TypeKind::LayoutType:
      if (v.tag != AtenTag::kLayout) return wrong("Layout");
      if (v.i != static_cast<std::int64_t>(c10::Layout::Strided)) {
        return Error(ErrorCode::kUnimplemented,
                     fmt::format("{}: {}: only the strided layout is carried", op, place.text()));
      }
      return c10::IValue(v.i);
    case c10::TypeKind::MemoryFormatType:
      if (v.tag != AtenTag::kMemoryFormat) return wrong("MemoryFormat");
      if (v.i < 0 || v.i >= static_cast<std::int64_t>(c10::MemoryFormat::NumOptions)) {
        return invalid(op, fmt::format("{}: memory format {}", place.text(), v.i));
      }
      return c10::IValue(v.i);
    case c10::TypeKind::DeviceObjType:
      // The guest's device is this host's CPU memory.
      if (v.tag != AtenTag::kDevice) return wrong("Device");
      return c10::IValue(c10::Device(c10::kCPU));
    case c10::TypeKind::ListType: {
      const c10::TypePtr element = type->castRaw<c10::ListType>()->getElementType();
      switch (element->kind()) {
        case c10::TypeKind::IntType:
        case c10::TypeKind::SymIntType:
          if (v.tag != AtenTag::kIntList) return wrong("int[]");
          return c10::IValue(v.ints);
        case c10::TypeKind::FloatType:
          if (v.tag != AtenTag::kDoubleList) return wrong("float[]");
          return c10::IValue(v.doubles);
        case c10::TypeKind::BoolType: {
          if (v.tag != AtenTag::kBoolList) return wrong("bool[]");
          c10::List<bool> bools;
          for (std::int64_t b : v.ints) bools.push_back(b != 0);
          return c10::IValue(std::move(bools));
        }
        case c10::TypeKind::TensorType: {
          if (v.tag != AtenTag::kTensorList) return wrong("Tensor[]");
          for (std::size_t k = 0; k < v.tensors.size(); ++k) {
            MALV_TRY(add_tensor_slot(
                op, Place{.argument = argument.name(), .element = static_cast<std::int64_t>(k)}, v,
                k, TensorSlot{.in_list = true, .index = index}, resolve, slots));
          }
          return c10::IValue(std::vector<at::Tensor>());
        }
        case c10::TypeKind::OptionalType: {
          if (!is_tensor(element->castRaw<c10::OptionalType>()->getElementType())) break;
          if (v.tag != AtenTag::kOptionalTensorList) return wrong("Tensor?[]");
          if (v.present.size() != v.tensors.size()) return wrong("Tensor?[]");
          for (std::size_t k = 0; k < v.tensors.size(); ++k) {
            TensorSlot slot{.in_list = true, .optional = true, .index = index};
            if (!v.present[k]) {
              slot.kind = TensorSlot::Kind::kAbsent;
              slots.push_back(std::move(slot));
              continue;
            }
            MALV_TRY(add_tensor_slot(
                op, Place{.argument = argument.name(), .element = static_cast<std::int64_t>(k)}, v,
                k, std::move(slot), resolve, slots));
          }
          return c10::IValue(c10::List<c10::optional<at::Tensor>>());
        }
        default: break;
      }
      break;
    }
    case c10::TypeKind::GeneratorType:
      break;  // only an absent one (the default generator), handled as optional above
    default: break;
  }
  return Error(ErrorCode::kUnimplemented,
               fmt::format("{}: {} of type {} cannot be carried", op, place.text(), type->str()));
}

// A non-tensor return, as a record value (a Scalar return travels as a
// scalar: the IValue alone does not say it was one).
Result<AtenValue> from_ivalue(std::string_view op, const c10::IValue& v, const c10::TypePtr& type) {
  if (v.isNone()) return AtenValue::none();
  if (type->kind() == c10::TypeKind::NumberType) {
    if (v.isBool()) return AtenValue{.tag = AtenTag::kScalarBool, .i = v.toBool() ? 1 : 0};
    if (v.isInt()) return AtenValue{.tag = AtenTag::kScalarInt, .i = v.toInt()};
    if (v.isDouble()) return AtenValue{.tag = AtenTag::kScalarDouble, .d = v.toDouble()};
  }
  if (v.isBool()) return AtenValue::boolean(v.toBool());
  if (v.isInt()) return AtenValue::integer(v.toInt());
  if (v.isDouble()) return AtenValue::real(v.toDouble());
  if (v.isScalar()) {
    const c10::Scalar s = v.toScalar();
    if (s.isBoolean()) return AtenValue{.tag = AtenTag::kScalarBool, .i = s.toBool() ? 1 : 0};
    if (s.isIntegral(false)) return AtenValue{.tag = AtenTag::kScalarInt, .i = s.toLong()};
    if (s.isFloatingPoint()) return AtenValue{.tag = AtenTag::kScalarDouble, .d = s.toDouble()};
  }
  return Error(ErrorCode::kUnimplemented,
               fmt::format("{}: a return of type {} cannot be carried", op, v.tagKind()));
}

Status copy_into(std::string_view op, std::size_t index, const at::Tensor& result,
                 const at::Tensor& out) {
  if (!result.sizes().equals(out.sizes()) || result.scalar_type() != out.scalar_type()) {
    return invalid(
        op, fmt::format("output {}: the operator returned {} {}, the record's output "
                        "is {} {}",
                        index, shape_text(result.sizes()), c10::toString(result.scalar_type()),
                        shape_text(out.sizes()), c10::toString(out.scalar_type())));
  }
  out.copy_(result);
  return ok_status();
}

// After the call, a written argument whose kernel resized or restrided it
// (`seen` no longer views `home` as the record did): its values in the VM's
// memory, or the reason they cannot be. Written arguments are growable
// views: some kernels reshape their out= tensor on the way (mse_loss.out
// with a reduction shapes its output like its input, then reduces into
// it), which a storage over the VM's memory cannot follow when it must
// grow; one that grew moved to libtorch's CPU allocator.
Status settle_written(std::string_view op, const c10::Argument& argument, const at::Tensor& seen,
                      const ViewSpec& home_spec) {
  const at::Tensor home = make_view(home_spec, /*growable=*/false);
  if (!seen.sizes().equals(home.sizes())) {
    return invalid(
        op, fmt::format("argument '{}': the operator resized it to {}, the "
                        "record's tensor is {}",
                        argument.name(), shape_text(seen.sizes()), shape_text(home.sizes())));
  }
  // Laid out anew over the same bytes: copied through a clone.
  const bool in_place = seen.data_ptr() == home.data_ptr();
  home.copy_(in_place ? seen.clone() : seen);
  return ok_status();
}

}  // namespace

struct AtenExecutor::Operator {
  explicit Operator(c10::OperatorHandle h) : handle(std::move(h)) {}
  c10::OperatorHandle handle;
  std::string name;
  // A moving average of its calls' run time per element of their tensors
  // (relaxed: an estimate; 0 before the first run): a call's estimate
  // scales with its size, so one VM's large calls do not make another's
  // small ones look long.
  mutable std::atomic<double> ns_per_element{0.0};
};

AtenExecutor::AtenExecutor(ExecutorOptions options) : options_(std::move(options)) {
  if (options_.intra_op_threads > 0) at::set_num_threads(options_.intra_op_threads);
}

AtenExecutor::~AtenExecutor() = default;

std::string AtenExecutor::denial(std::string_view schema_name) const {
  if (!schema_name.starts_with("aten::")) return "only aten:: operators run on the host";
  for (std::string_view bad : kAlwaysDenied) {
    if (schema_name.find(bad) != std::string_view::npos) {
      return fmt::format("'{}' operators reach outside the VM's memory or the CPU", bad);
    }
  }
  for (const std::string& bad : options_.allow.denied) {
    if (!bad.empty() && schema_name.find(bad) != std::string_view::npos) {
      return fmt::format("the admin denies '{}'", bad);
    }
  }
  return "";
}

Result<std::uint32_t> AtenExecutor::intern(std::string_view schema_name) {
  if (schema_name.empty() || schema_name.size() > 256) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("an operator name of {} bytes (1-256)", schema_name.size()));
  }
  const std::string why = denial(schema_name);
  if (!why.empty()) {
    return Error(ErrorCode::kPermissionDenied, fmt::format("{}: {}", schema_name, why));
  }
  const std::size_t dot = schema_name.find('.');
  const std::string name(schema_name.substr(0, dot));
  const std::string overload(dot == std::string_view::npos ? "" : schema_name.substr(dot + 1));
  auto handle = c10::Dispatcher::singleton().findSchema({name, overload});
  if (!handle) {
    return Error(ErrorCode::kNotFound,
                 fmt::format("{}: this host's libtorch has no such operator", schema_name));
  }
  const bool runs_here =
      handle->hasKernelForDispatchKey(c10::DispatchKey::CPU) ||
      handle->hasKernelForDispatchKey(c10::DispatchKey::CompositeExplicitAutograd) ||
      handle->hasKernelForDispatchKey(c10::DispatchKey::CompositeImplicitAutograd);
  if (!runs_here) {
    return Error(ErrorCode::kPermissionDenied,
                 fmt::format("{}: no CPU kernel in this host's libtorch", schema_name));
  }
  std::lock_guard lock(mu_);
  for (std::size_t i = 0; i < operators_.size(); ++i) {
    if (operators_[i]->name == schema_name) return static_cast<std::uint32_t>(i + 1);
  }
  auto entry = std::make_unique<Operator>(*handle);
  entry->name = std::string(schema_name);
  operators_.push_back(std::move(entry));
  return static_cast<std::uint32_t>(operators_.size());
}

const AtenExecutor::Operator* AtenExecutor::find(std::uint32_t id) const {
  std::lock_guard lock(mu_);
  if (id == 0 || id > operators_.size()) return nullptr;
  return operators_[id - 1].get();
}

std::string AtenExecutor::schema(std::uint32_t id) const {
  const Operator* op = find(id);
  if (op == nullptr) return "";
  std::ostringstream text;
  text << op->handle.schema();
  return text.str();
}

// libtorch's CPU kernels trust their callers; some divide by a size that an
// empty input makes 0 (batch norm over no elements), and an integer division
// by zero is SIGFPE, which would take the whole host down. A call runs with
// a recovery point: SIGFPE raised on this thread inside the call jumps back
// to it and fails the call (what the kernel allocated may leak). SIGFPE
// anywhere else keeps its default action. Other faults (SIGSEGV) are not
// caught: nothing is known to be safe after one (docs/torch.md, "Known holes").
namespace {

thread_local sigjmp_buf* t_recovery = nullptr;

void on_sigfpe(int signal) {
  if (t_recovery != nullptr) siglongjmp(*t_recovery, 1);
  std::signal(signal, SIG_DFL);
  std::raise(signal);
}

void install_sigfpe_handler() {
  static const bool installed = [] {
    struct sigaction action {};
    action.sa_handler = &on_sigfpe;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_NODEFER;
    return ::sigaction(SIGFPE, &action, nullptr) == 0;
  }();
  (void)installed;
}

// callBoxed, false when the kernel raised SIGFPE on this thread.
bool call_guarded(const c10::OperatorHandle& handle, torch::jit::Stack& stack) {
  install_sigfpe_handler();
  sigjmp_buf recovery;
  // The signal mask is not saved (a system call per call): the handler runs
  // with SIGFPE unblocked (SA_NODEFER), so the jump finds the mask as it was.
  if (sigsetjmp(recovery, 0) != 0) {
    t_recovery = nullptr;
    return false;
  }
  struct Disarm {
    ~Disarm() { t_recovery = nullptr; }  // also when the kernel throws
  } disarm;
  t_recovery = &recovery;
  handle.callBoxed(&stack);
  return true;
}

}  // namespace

// One validated call: its stack but for the tensors, and where each
// tensor's bytes are (the run binds them: ViewCache).
struct PreparedCall::State {
  const c10::OperatorHandle* handle = nullptr;
  std::atomic<double>* ns_per_element = nullptr;  // the operator's (AtenExecutor::Operator)
  double elements = 1;                            // of its tensors, outputs included (>= 1)
  std::string_view name;                          // the operator's (lives with the executor)
  // Inline room for a usual call: a call is made on the dispatcher's thread
  // and freed on a worker's, and each allocation that crosses threads costs
  // glibc's malloc a lock.
  c10::SmallVector<c10::IValue, 8> arguments;    // the stack to be (tensors: None until bound)
  c10::SmallVector<TensorSlot, 4> slots;         // in argument order, then the outputs
  c10::SmallVector<std::size_t, 2> outputs_for;  // return index of each output value
  c10::SmallVector<std::size_t, 2> output_counts;
};

PreparedCall::PreparedCall(std::unique_ptr<State> state) : state_(std::move(state)) {}
PreparedCall::PreparedCall(PreparedCall&&) noexcept = default;
PreparedCall& PreparedCall::operator=(PreparedCall&&) noexcept = default;
PreparedCall::~PreparedCall() = default;

std::int64_t PreparedCall::estimated_ns() const {
  if (!state_) return 0;
  return static_cast<std::int64_t>(state_->ns_per_element->load(std::memory_order_relaxed) *
                                   state_->elements);
}

std::string_view PreparedCall::name() const {
  if (!state_) return {};
  return state_->name;
}

Result<PreparedCall> AtenExecutor::prepare(std::uint32_t id, std::span<const AtenValue> args,
                                           const ResolveBuffer& resolve) const {
  const Operator* op = find(id);
  if (op == nullptr) {
    return Error(ErrorCode::kNotFound, fmt::format("operator id {} was never interned", id));
  }
  auto state = std::make_unique<PreparedCall::State>();
  state->handle = &op->handle;
  state->ns_per_element = &op->ns_per_element;
  state->name = op->name;
  const std::string_view name = op->name;
  const c10::FunctionSchema& schema = op->handle.schema();
  const auto& arguments = schema.arguments();
  const auto& returns = schema.returns();
  // Functional tensor returns need an output each, after the arguments.
  for (std::size_t r = 0; r < returns.size(); ++r) {
    const bool aliased = returns[r].alias_info() != nullptr && returns[r].alias_info()->isWrite();
    const c10::TypePtr& type = returns[r].type();
    const bool tensor_list = type->kind() == c10::TypeKind::ListType &&
                             is_tensor(type->castRaw<c10::ListType>()->getElementType());
    if (!aliased && (is_tensor(type) || tensor_list)) state->outputs_for.push_back(r);
  }
  if (args.size() != arguments.size() + state->outputs_for.size()) {
    return invalid(name, fmt::format("the record has {} values; the schema wants {} arguments "
                                     "and {} outputs",
                                     args.size(), arguments.size(), state->outputs_for.size()));
  }
  try {
    for (std::size_t i = 0; i < arguments.size(); ++i) {
      const c10::AliasInfo* alias = arguments[i].alias_info();
      const bool written = alias != nullptr && alias->isWrite();
      MALV_ASSIGN_OR_RETURN(c10::IValue value,
                            to_ivalue(name, arguments[i], static_cast<std::uint32_t>(i), written,
                                      arguments[i].real_type(), args[i], resolve, state->slots));
      state->arguments.push_back(std::move(value));
    }
    for (std::size_t k = 0; k < state->outputs_for.size(); ++k) {
      const AtenValue& v = args[arguments.size() + k];
      const bool list = returns[state->outputs_for[k]].type()->kind() == c10::TypeKind::ListType;
      const TensorSlot output{.output = true, .index = static_cast<std::uint32_t>(k)};
      if (v.tag == AtenTag::kNone && !list) {
        // An output the caller does not want (convolution_backward's
        // output_mask): the operator must not return one.
        TensorSlot absent = output;
        absent.kind = TensorSlot::Kind::kAbsent;
        state->slots.push_back(std::move(absent));
        state->output_counts.push_back(1);
        continue;
      }
      if (v.tag != (list ? AtenTag::kTensorList : AtenTag::kTensor) ||
          (!list && v.tensors.size() != 1)) {
        return invalid(name,
                       fmt::format("output {} must be a {}", k, list ? "Tensor[]" : "Tensor"));
      }
      for (std::size_t t = 0; t < v.tensors.size(); ++t) {
        state->slots.push_back(output);
        MALV_TRY(
            check_view(name, Place{.output = k}, v.tensors[t], resolve, state->slots.back().view));
      }
      state->output_counts.push_back(v.tensors.size());
    }
  } catch (const c10::Error& e) {
    return invalid(name, e.what_without_backtrace());
  }
  double elements = 0;
  for (const TensorSlot& slot : state->slots) {
    if (slot.kind == TensorSlot::Kind::kView) elements += static_cast<double>(slot.view.numel());
  }
  state->elements = std::max(elements, 1.0);
  return PreparedCall(std::move(state));
}

namespace {

// The tensors of a checked call, bound on the thread that runs it: its
// views from this thread's cache (growable where the operator writes),
// its CPU scalars made anew, each list built, the outputs in order.
struct BoundCall {
  c10::SmallVector<at::Tensor, 6> views;  // per slot (undefined but for kView)
  c10::SmallVector<at::Tensor, 2> outputs;
};

BoundCall bind_tensors(const c10::SmallVectorImpl<TensorSlot>& slots, torch::jit::Stack& stack) {
  ViewCache& cache = ViewCache::local();
  BoundCall bound;
  bound.views.resize(slots.size());
  auto tensor_of = [&](std::size_t s) -> at::Tensor {
    const TensorSlot& slot = slots[s];
    switch (slot.kind) {
      case TensorSlot::Kind::kView:
        bound.views[s] = cache.get(slot.view, slot.written);
        return bound.views[s];
      case TensorSlot::Kind::kCpuScalar: return cpu_scalar(slot);
      case TensorSlot::Kind::kAbsent: return at::Tensor();
    }
    return at::Tensor();
  };
  std::size_t s = 0;
  while (s < slots.size()) {
    const TensorSlot& slot = slots[s];
    if (slot.output) {
      bound.outputs.push_back(tensor_of(s++));
    } else if (!slot.in_list) {
      stack[slot.index] = c10::IValue(tensor_of(s++));
    } else if (!slot.optional) {
      std::vector<at::Tensor> list;
      for (; s < slots.size() && !slots[s].output && slots[s].index == slot.index; ++s) {
        list.push_back(tensor_of(s));
      }
      stack[slot.index] = c10::IValue(std::move(list));
    } else {
      c10::List<c10::optional<at::Tensor>> list;
      for (; s < slots.size() && !slots[s].output && slots[s].index == slot.index; ++s) {
        at::Tensor t = tensor_of(s);
        if (t.defined()) {
          list.push_back(std::move(t));
        } else {
          list.push_back(c10::nullopt);
        }
      }
      stack[slot.index] = c10::IValue(std::move(list));
    }
  }
  return bound;
}

// After the call (run or failed): the cache forgets every view the kernel
// resized or restrided. `settle` (when it ran) copies a written argument's
// values home first; its error is the call's.
Status release(std::string_view op, const c10::FunctionSchema& schema,
               const c10::SmallVectorImpl<TensorSlot>& slots, const BoundCall& bound, bool settle) {
  ViewCache& cache = ViewCache::local();
  Status status = ok_status();
  for (std::size_t s = 0; s < slots.size(); ++s) {
    const TensorSlot& slot = slots[s];
    if (slot.kind != TensorSlot::Kind::kView || !bound.views[s].defined() ||
        still_views(bound.views[s], slot.view)) {
      continue;
    }
    if (settle && slot.written && status.ok()) {
      status = settle_written(op, schema.arguments()[slot.index], bound.views[s], slot.view);
    }
    cache.forget(slot.view, slot.written);
  }
  return status;
}

}  // namespace

Result<std::vector<AtenValue>> PreparedCall::run() {
  if (!state_) return Error(ErrorCode::kFailedPrecondition, "an empty or spent call");
  std::unique_ptr<State> state = std::move(state_);  // one run
  const std::string_view name = state->name;
  // The run time feeds the operator's moving average per element (1/8 of
  // each new one).
  struct Timed {
    std::atomic<double>* average;
    double elements;
    std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
    ~Timed() {
      const double took =
          std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - start)
              .count() /
          elements;
      const double was = average->load(std::memory_order_relaxed);
      average->store(was == 0 ? took : was + (took - was) / 8, std::memory_order_relaxed);
    }
  } timed{state->ns_per_element, state->elements};
  const c10::FunctionSchema& schema = state->handle->schema();
  const auto& returns = schema.returns();
  torch::jit::Stack stack(std::make_move_iterator(state->arguments.begin()),
                          std::make_move_iterator(state->arguments.end()));
  BoundCall bound;
  try {
    bound = bind_tensors(state->slots, stack);
    // Our own references to the arguments for the call: an out= kernel's
    // boxed wrapper pops the arguments before it pushes its returns, which
    // are references to them; with the stack the only owner, they would
    // dangle (PyTorch's own callers always hold the out tensors).
    const c10::SmallVector<c10::IValue, 8> arguments_alive(stack.begin(), stack.end());
    // The intra-op thread count a native run has: OpenMP keeps it per
    // thread, and a backend worker that never set it would run on every
    // logical CPU (2 here where a native process runs on 1, the physical
    // cores): at::init_num_threads() gives it libtorch's setting, once.
    thread_local const bool threads_set = [] {
      at::init_num_threads();
      return true;
    }();
    (void)threads_set;
    if (!call_guarded(*state->handle, stack)) {
      (void)release(name, schema, state->slots, bound, /*settle=*/false);
      return Error(ErrorCode::kInvalidArgument,
                   fmt::format("{}: the operator's kernel raised an arithmetic fault (SIGFPE: an "
                               "integer division by zero, e.g. on an empty input) and was stopped; "
                               "this call failed, the session goes on",
                               name));
    }
    MALV_TRY(release(name, schema, state->slots, bound, /*settle=*/true));
    if (stack.size() != returns.size()) {
      return Error(ErrorCode::kInternal, fmt::format("{}: {} returns, the schema has {}", name,
                                                     stack.size(), returns.size()));
    }
    std::vector<AtenValue> values;
    std::size_t output = 0;
    std::size_t next = 0;  // index into outputs_for
    for (std::size_t r = 0; r < returns.size(); ++r) {
      if (next < state->outputs_for.size() && state->outputs_for[next] == r) {
        if (stack[r].isTensor() || stack[r].isNone()) {
          const at::Tensor result = stack[r].isTensor() ? stack[r].toTensor() : at::Tensor();
          const at::Tensor& out = bound.outputs[output++];
          if (out.defined() && result.defined() && result.numel() == 0 && out.numel() > 0) {
            // An empty result where the meta kernel promised elements (batch
            // norm's saved statistics in eval mode): nothing to copy; the
            // guest's output keeps its shape (docs/torch.md, known holes).
          } else if (!out.defined() || !result.defined()) {
            if (out.defined() != result.defined()) {
              return invalid(name,
                             fmt::format("output {}: the operator {} one, the record {}", next,
                                         result.defined() ? "returned" : "did not return",
                                         out.defined() ? "has one" : "has none"));
            }
          } else {
            MALV_TRY(copy_into(name, next, result, out));
          }
        } else {
          const std::vector<at::Tensor> results = stack[r].toTensorVector();
          if (results.size() != state->output_counts[next]) {
            return invalid(name, fmt::format("output {}: the operator returned {} tensors, the "
                                             "record has {}",
                                             next, results.size(), state->output_counts[next]));
          }
          for (const at::Tensor& t : results) {
            MALV_TRY(copy_into(name, next, t, bound.outputs[output++]));
          }
        }
        ++next;
        continue;
      }
      if (stack[r].isTensor() || stack[r].isTensorList()) continue;  // written in place
      MALV_ASSIGN_OR_RETURN(AtenValue v, from_ivalue(name, stack[r], returns[r].type()));
      values.push_back(std::move(v));
    }
    return values;
  } catch (const c10::Error& e) {
    (void)release(name, schema, state->slots, bound, /*settle=*/false);
    return invalid(name, e.what_without_backtrace());
  } catch (const std::exception& e) {
    (void)release(name, schema, state->slots, bound, /*settle=*/false);
    return invalid(name, e.what());
  }
}

namespace {

class ExecutorTask final : public AtenTask {
 public:
  explicit ExecutorTask(PreparedCall call)
      : name_(call.name()), estimated_ns_(call.estimated_ns()), call_(std::move(call)) {}
  std::int64_t estimated_ns() const override { return estimated_ns_; }
  ErrorCode run() override {
    Result<std::vector<AtenValue>> returned = call_.run();
    if (!returned.ok()) {
      error_text_ = returned.error().message();
      return returned.error().code();
    }
    returns_ = std::move(returned).value();
    return ErrorCode::kOk;
  }
  std::string_view name() const override { return name_; }
  const std::vector<AtenValue>& returns() const override { return returns_; }
  const std::string& error_text() const override { return error_text_; }

 private:
  std::string_view name_;  // the operator's (lives with the executor)
  std::int64_t estimated_ns_ = 0;
  PreparedCall call_;
  std::vector<AtenValue> returns_;
  std::string error_text_;
};

}  // namespace

Result<std::shared_ptr<AtenTask>> AtenExecutor::prepare_task(std::uint32_t id,
                                                             std::span<const AtenValue> args,
                                                             const ResolveBuffer& resolve) const {
  MALV_ASSIGN_OR_RETURN(PreparedCall call, prepare(id, args, resolve));
  return std::shared_ptr<AtenTask>(std::make_shared<ExecutorTask>(std::move(call)));
}

Result<std::vector<AtenValue>> AtenExecutor::run(std::uint32_t id, std::span<const AtenValue> args,
                                                 const ResolveBuffer& resolve) {
  MALV_ASSIGN_OR_RETURN(PreparedCall call, prepare(id, args, resolve));
  return call.run();
}

}  // namespace malv::accel::aten
