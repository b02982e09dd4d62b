// The `malv` torch device's kernels (the PrivateUse1 dispatch key): the
// allocator, the device guard, the few kernels PyTorch needs explicitly
// (allocation, copies to and from the CPU, views, resize_) and one boxed
// fallback that sends every other operator to the host as its schema name
// and typed arguments. Output shapes come from PyTorch's meta kernels here
// in the guest, so a call that returns only tensors is queued and the
// guest goes on; one that returns a value (item(), a bool) waits.
// docs/torch.md has the design.
#include <ATen/ATen.h>
#include <ATen/EmptyTensor.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/ops/_reshape_alias_native.h>
#include <ATen/ops/as_strided_native.h>
#include <ATen/ops/view_native.h>
#include <c10/core/impl/DeviceGuardImplInterface.h>
#include <pybind11/pybind11.h>
#include <torch/csrc/Exceptions.h>
#include <torch/library.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "device_state.h"
#include "malv/aten.h"
#include "meta_shapes.h"

namespace malv::torch_device {
namespace {

using wire::AtenTag;
using wire::AtenTensorArg;
using wire::AtenValue;

const c10::Device kDevice(c10::DeviceType::PrivateUse1, 0);
const c10::DispatchKeySet kKeys(c10::DispatchKey::PrivateUse1);

// ------------------------------------------------------------ allocator --

void free_device_memory(void* base) { DeviceState::get().release(base); }

struct DeviceAllocator final : c10::Allocator {
  c10::DataPtr allocate(std::size_t nbytes) const override {
    void* base = nullptr;
    try {
      Session session;
      // Never zero bytes: an empty tensor still names a buffer on the wire.
      base = DeviceState::get().allocate(session, nbytes);
    } catch (const QuotaExceeded& refused) {
      raise_quota_exceeded(refused);  // the lock released first
    }
    return {base, base, &free_device_memory, kDevice};
  }
  c10::DeleterFnPtr raw_deleter() const override { return &free_device_memory; }
};

DeviceAllocator g_allocator;

// ---------------------------------------------------------- device guard --

struct DeviceGuard final : c10::impl::DeviceGuardImplInterface {
  c10::DeviceType type() const override { return c10::DeviceType::PrivateUse1; }
  c10::Device exchangeDevice(c10::Device) const override { return kDevice; }
  c10::Device getDevice() const override { return kDevice; }
  void setDevice(c10::Device) const override {}
  void uncheckedSetDevice(c10::Device) const noexcept override {}
  c10::Stream getStream(c10::Device) const noexcept override {
    return c10::Stream(c10::Stream::DEFAULT, kDevice);
  }
  c10::Stream exchangeStream(c10::Stream) const noexcept override {
    return c10::Stream(c10::Stream::DEFAULT, kDevice);
  }
  c10::DeviceIndex deviceCount() const noexcept override { return 1; }
};

C10_REGISTER_GUARD_IMPL(PrivateUse1, DeviceGuard);

// ---------------------------------------------------------- the wire view --

// The wire's view of a device tensor, into `arg` (its vectors keep their
// capacity: the fallback reuses its values).
void view_into(AtenTensorArg& arg, const at::Tensor& t) {
  const DeviceSpan span = span_of(t);
  arg.buffer = span.buffer;
  arg.offset = span.offset;
  arg.dtype = static_cast<std::uint32_t>(t.scalar_type());
  arg.sizes.assign(t.sizes().begin(), t.sizes().end());
  arg.strides.assign(t.strides().begin(), t.strides().end());
}

AtenTensorArg view_of(const at::Tensor& t) {
  AtenTensorArg arg;
  view_into(arg, t);
  return arg;
}

bool on_device(const at::Tensor& t) {
  return t.defined() && t.device().type() == c10::DeviceType::PrivateUse1;
}

// Which argument of which operator a value is, for messages: made into
// text only when one is raised (it is on every call's path).
struct ArgumentName {
  std::string_view op;
  std::string_view argument;
};
std::ostream& operator<<(std::ostream& out, const ArgumentName& name) {
  if (name.op.empty()) return out << name.argument;
  return out << name.op << " argument '" << name.argument << "'";
}

void encode_tensor(AtenValue& v, const at::Tensor& t, const ArgumentName& what) {
  if (!t.defined()) return v.reset(AtenTag::kNone);
  if (on_device(t)) {
    v.reset(AtenTag::kTensor);
    v.tensors.resize(1);
    view_into(v.tensors[0], t);
    v.present.push_back(true);
    return;
  }
  // A CPU scalar (a Python number PyTorch wrapped as a 0-dim tensor).
  TORCH_CHECK(t.device().is_cpu() && t.dim() == 0, "malv: ", what, " is a CPU tensor of ", t.dim(),
              " dimensions; move it to the malv device first (tensor.to(device))");
  v.reset(AtenTag::kCpuScalar);
  v.scalar_flags = static_cast<std::uint32_t>(t.scalar_type()) |
                   (t.unsafeGetTensorImpl()->is_wrapped_number() ? wire::kAtenWrappedNumber : 0u);
  v.scalar_is_floating = c10::isFloatingType(t.scalar_type());
  if (v.scalar_is_floating) {
    v.d = t.item<double>();
  } else {
    v.i = t.item<std::int64_t>();
  }
}

AtenValue encoded_tensor(const at::Tensor& t, const ArgumentName& what) {
  AtenValue v;
  encode_tensor(v, t, what);
  return v;
}

void encode_scalar(AtenValue& v, const c10::Scalar& s) {
  if (s.isBoolean()) {
    v.reset(AtenTag::kScalarBool);
    v.i = s.toBool() ? 1 : 0;
  } else if (s.isIntegral(false)) {
    v.reset(AtenTag::kScalarInt);
    v.i = s.toLong();
  } else {
    TORCH_CHECK(s.isFloatingPoint(), "malv: complex scalars are not carried");
    v.reset(AtenTag::kScalarDouble);
    v.d = s.toDouble();
  }
}

// One argument by its schema type, into `v` (reused: see AtenValue::reset()).
void encode(AtenValue& v, const c10::IValue& value, const c10::TypePtr& type,
            const ArgumentName& what) {
  if (auto optional = type->cast<c10::OptionalType>()) {
    if (value.isNone()) return v.reset(AtenTag::kNone);
    return encode(v, value, optional->getElementType(), what);
  }
  auto word = [&v](AtenTag tag, std::int64_t i) {
    v.reset(tag);
    v.i = i;
  };
  switch (type->kind()) {
    case c10::TypeKind::TensorType: return encode_tensor(v, value.toTensor(), what);
    case c10::TypeKind::IntType:
    case c10::TypeKind::SymIntType: return word(AtenTag::kInt, value.toInt());
    case c10::TypeKind::FloatType:
      v.reset(AtenTag::kDouble);
      v.d = value.toDouble();
      return;
    case c10::TypeKind::BoolType: return word(AtenTag::kBool, value.toBool() ? 1 : 0);
    case c10::TypeKind::NumberType: return encode_scalar(v, value.toScalar());
    case c10::TypeKind::StringType:
      v.reset(AtenTag::kString);
      v.text = value.toStringRef();
      return;
    case c10::TypeKind::ScalarTypeType: return word(AtenTag::kScalarType, value.toInt());
    case c10::TypeKind::LayoutType: return word(AtenTag::kLayout, value.toInt());
    case c10::TypeKind::MemoryFormatType: return word(AtenTag::kMemoryFormat, value.toInt());
    case c10::TypeKind::DeviceObjType: return word(AtenTag::kDevice, 0);
    case c10::TypeKind::ListType: {
      const c10::TypePtr element = type->castRaw<c10::ListType>()->getElementType();
      switch (element->kind()) {
        case c10::TypeKind::IntType:
        case c10::TypeKind::SymIntType: {
          v.reset(AtenTag::kIntList);
          const auto list = value.toIntList();
          v.ints.assign(list.begin(), list.end());
          return;
        }
        case c10::TypeKind::FloatType: {
          v.reset(AtenTag::kDoubleList);
          const auto list = value.toDoubleList();
          v.doubles.assign(list.begin(), list.end());
          return;
        }
        case c10::TypeKind::BoolType:
          v.reset(AtenTag::kBoolList);
          for (bool b : value.toBoolList()) v.ints.push_back(b ? 1 : 0);
          return;
        case c10::TypeKind::TensorType: {
          v.reset(AtenTag::kTensorList);
          const auto list = value.toTensorList();
          v.tensors.resize(list.size());
          for (std::size_t k = 0; k < list.size(); ++k) {
            const at::Tensor t = list.get(k);
            TORCH_CHECK(on_device(t), "malv: ", what, " holds a tensor not on the malv device");
            view_into(v.tensors[k], t);
            v.present.push_back(true);
          }
          return;
        }
        case c10::TypeKind::OptionalType: {
          v.reset(AtenTag::kOptionalTensorList);
          const auto& list = value.toListRef();
          v.tensors.resize(list.size());
          for (std::size_t k = 0; k < list.size(); ++k) {
            const c10::IValue& e = list[k];
            if (e.isNone() || !e.toTensor().defined()) {
              v.tensors[k] = AtenTensorArg();
              v.present.push_back(false);
              continue;
            }
            TORCH_CHECK(on_device(e.toTensor()), "malv: ", what,
                        " holds a tensor not on the malv device");
            view_into(v.tensors[k], e.toTensor());
            v.present.push_back(true);
          }
          return;
        }
        default: break;
      }
      break;
    }
    case c10::TypeKind::GeneratorType:
      TORCH_CHECK_NOT_IMPLEMENTED(value.isNone(), "malv: ", what,
                                  ": only the default generator is carried");
      return v.reset(AtenTag::kNone);
    default: break;
  }
  TORCH_CHECK_NOT_IMPLEMENTED(false, "malv: ", what, " of type ", type->str(),
                              " is not carried to the host");
}

c10::IValue decode_return(const AtenValue& v) {
  switch (v.tag) {
    case AtenTag::kBool: return c10::IValue(v.i != 0);
    case AtenTag::kInt: return c10::IValue(v.i);
    case AtenTag::kDouble: return c10::IValue(v.d);
    case AtenTag::kScalarBool: return c10::IValue(c10::Scalar(v.i != 0));
    case AtenTag::kScalarInt: return c10::IValue(c10::Scalar(v.i));
    case AtenTag::kScalarDouble: return c10::IValue(c10::Scalar(v.d));
    case AtenTag::kNone: return c10::IValue();
    default: break;
  }
  TORCH_CHECK(false, "malv: the host returned a value of tag ", static_cast<int>(v.tag));
}

// "aten::add.out": made once per operator and thread (the fallback asks on
// every call).
const std::string& operator_name(const c10::OperatorHandle& op) {
  thread_local std::unordered_map<const c10::FunctionSchema*, std::string> names;
  auto [it, made] = names.try_emplace(&op.schema());
  if (made) {
    const c10::OperatorName& name = op.schema().operator_name();
    it->second = name.overload_name.empty() ? name.name : name.name + "." + name.overload_name;
  }
  return it->second;
}

// A scratch object of this thread, reused by each call of the fallback (no
// allocation per call: a string's or a vector's capacity stays), unless a
// fallback runs inside another on this thread (encoding an argument can run
// operators), which then gets a fresh one.
template <typename T>
class Scratch {
 public:
  Scratch() : nested_(depth()++ > 0) {}
  ~Scratch() { --depth(); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  T& get() { return nested_ ? own_ : kept(); }

 private:
  static int& depth() {
    thread_local int d = 0;
    return d;
  }
  static T& kept() {
    thread_local T t;
    return t;
  }
  bool nested_;
  T own_;
};

// Sends `op` with `values` on the stream: queued, or (want_returns) run
// and waited for, its non-tensor returns given back.
std::vector<AtenValue> send(const std::string& name, std::span<const AtenValue> values,
                            bool want_returns) {
  Session session;
  DeviceState& state = DeviceState::get();
  const std::uint32_t id = state.operator_id(session, name);
  state.count_operator();
  // MALV_TORCH_BLOCKING=1 (as CUDA_LAUNCH_BLOCKING): every call waits and
  // raises its own error, with the host's message.
  static const bool blocking = [] {
    const char* env = std::getenv("MALV_TORCH_BLOCKING");
    return env != nullptr && env[0] == '1';
  }();
  static const bool trace = [] {
    const char* env = std::getenv("MALV_TORCH_TRACE");
    return env != nullptr && env[0] == '1';
  }();
  if (trace)
    std::fprintf(stderr, "malv.torch: %s%s\n", name.c_str(), want_returns ? " (waits)" : "");
  if (!want_returns && !blocking) {
    const Status queued = guest::aten_enqueue(session.connection(), session.stream(), id, values);
    TORCH_CHECK(queued.ok(), "malv: ", name, ": ", queued.error().to_string());
    state.after_enqueue(session.connection());
    return {};
  }
  Result<std::vector<AtenValue>> returned =
      guest::aten_call(session.connection(), session.stream(), id, values);
  TORCH_CHECK(returned.ok(), "malv: ", name, ": ", returned.error().to_string());
  return std::move(returned).value();
}
std::vector<AtenValue> send(const std::string& name, std::initializer_list<AtenValue> values,
                            bool want_returns) {
  return send(name, std::span<const AtenValue>(values.begin(), values.size()), want_returns);
}

// ----------------------------------------------------------- allocation --

at::Tensor empty_strided_device(at::IntArrayRef size, at::IntArrayRef stride,
                                c10::ScalarType dtype) {
  return at::detail::empty_strided_generic(size, stride, &g_allocator, kKeys, dtype);
}

void empty_memory_format(const c10::OperatorHandle&, torch::jit::Stack* stack) {
  // (SymInt[] size, *, ScalarType? dtype, Layout? layout, Device? device,
  //  bool? pin_memory, MemoryFormat? memory_format)
  auto args = torch::jit::last(*stack, 6);
  const std::vector<std::int64_t> size = args[0].toIntVector();
  const c10::ScalarType dtype =
      args[1].isNone() ? c10::get_default_dtype_as_scalartype() : args[1].toScalarType();
  const c10::optional<c10::MemoryFormat> format =
      args[5].isNone() ? c10::nullopt : c10::optional<c10::MemoryFormat>(args[5].toMemoryFormat());
  at::Tensor t = at::detail::empty_generic(size, &g_allocator, kKeys, dtype, format);
  torch::jit::drop(*stack, 6);
  torch::jit::push(*stack, std::move(t));
}

void empty_strided(const c10::OperatorHandle&, torch::jit::Stack* stack) {
  // (SymInt[] size, SymInt[] stride, *, ScalarType? dtype, Layout?, Device?, bool?)
  auto args = torch::jit::last(*stack, 6);
  const std::vector<std::int64_t> size = args[0].toIntVector(), stride = args[1].toIntVector();
  const c10::ScalarType dtype =
      args[2].isNone() ? c10::get_default_dtype_as_scalartype() : args[2].toScalarType();
  at::Tensor t = empty_strided_device(size, stride, dtype);
  torch::jit::drop(*stack, 6);
  torch::jit::push(*stack, std::move(t));
}

// Grows a device tensor's storage to hold `size` contiguous elements past
// its offset, keeping what it held; every view of the storage sees it.
void resize_device(const at::Tensor& self, at::IntArrayRef size) {
  c10::TensorImpl* impl = self.unsafeGetTensorImpl();
  impl->set_sizes_contiguous(size);
  const std::size_t needed =
      static_cast<std::size_t>(self.storage_offset() + self.numel()) * self.itemsize();
  c10::StorageImpl* storage = impl->storage().unsafeGetStorageImpl();
  if (needed <= storage->nbytes()) return;
  const std::size_t old_bytes = storage->nbytes();
  c10::DataPtr fresh = g_allocator.allocate(needed);
  if (old_bytes > 0 && storage->data() != nullptr) {
    Session session;
    const DeviceSpan from = DeviceState::get().locate(storage->data());
    const DeviceSpan to = DeviceState::get().locate(fresh.get());
    const Status copied =
        session.stream().copy(*from.object, from.offset, *to.object, to.offset, old_bytes);
    TORCH_CHECK(copied.ok(), "malv: resize_: ", copied.error().to_string());
  }
  // The old memory is freed after the copy queued above (the host frees a
  // buffer once the work queued before it has run).
  c10::DataPtr old = storage->set_data_ptr(std::move(fresh));
  storage->set_nbytes(needed);
}

void resize_(const c10::OperatorHandle&, torch::jit::Stack* stack) {
  // (Tensor(a!) self, SymInt[] size, *, MemoryFormat? memory_format) -> Tensor(a!)
  auto args = torch::jit::last(*stack, 3);
  at::Tensor self = args[0].toTensor();
  resize_device(self, args[1].toIntVector());
  torch::jit::drop(*stack, 3);
  torch::jit::push(*stack, std::move(self));
}

// --------------------------------------------------------------- copies --

bool plain_contiguous(const at::Tensor& t) { return t.is_contiguous(); }

// PyTorch's lazy math bits (conjugate, negative: x.conj(), x.conj().imag)
// are metadata of a tensor, not of its bytes, and the wire's view carries
// bytes only. Copies here move bytes ("physical" values); a copy between
// tensors whose bits differ then applies the difference to the
// destination's bytes, as the CPU's copy kernel does.

// A device copy of bytes on the host: dst.copy_(src), both on the device,
// math bits ignored.
void device_copy_bytes(const at::Tensor& dst, const at::Tensor& src) {
  send("aten::copy_",
       {AtenValue::tensor(view_of(dst)), encoded_tensor(src, ArgumentName{{}, "src"}),
        AtenValue::boolean(false)},
       false);
}

// Conjugates and/or negates dst's bytes in place on the host.
void apply_math_bits(const at::Tensor& dst, bool conjugate, bool negate) {
  if (conjugate && dst.is_complex())
    send("aten::conj_physical_", {AtenValue::tensor(view_of(dst))}, false);
  if (negate) send("aten::neg_", {AtenValue::tensor(view_of(dst))}, false);
}

// dst = src, both on the device, math bits honoured.
void device_copy(const at::Tensor& dst, const at::Tensor& src) {
  device_copy_bytes(dst, src);
  apply_math_bits(dst, src.is_conj() != dst.is_conj(), src.is_neg() != dst.is_neg());
}

// CPU -> device: the bytes travel through the arena (kWrite), then the
// host converts layout or dtype if dst needs it. The CPU resolves the math
// bits first: the bytes written are what dst's bits expect.
void copy_to_device(const at::Tensor& src, const at::Tensor& dst) {
  at::Tensor host = src.resolve_conj().resolve_neg().to(dst.scalar_type());
  if (dst.is_conj()) host = host.conj_physical();
  if (dst.is_neg()) host = host.neg();
  host = host.contiguous();
  const bool direct = plain_contiguous(dst) && host.sizes().equals(dst.sizes());
  at::Tensor target =
      direct ? dst : empty_strided_device(host.sizes(), host.strides(), host.scalar_type());
  const std::size_t bytes = static_cast<std::size_t>(host.numel()) * host.itemsize();
  if (bytes > 0) {
    Session session;
    const DeviceSpan span = span_of(target);
    const Status written =
        session.stream().write(*span.object, span.offset,
                               std::span(static_cast<const std::byte*>(host.data_ptr()), bytes));
    TORCH_CHECK(written.ok(), "malv: copying to the device: ", written.error().to_string());
  }
  if (!direct) device_copy_bytes(dst, target);
}

// device -> CPU: waits for the stream, reads the bytes (kRead); the CPU's
// copy applies src's math bits.
void copy_to_cpu(const at::Tensor& src, const at::Tensor& dst) {
  at::Tensor contiguous = src;
  if (!plain_contiguous(src)) {
    contiguous =
        empty_strided_device(src.sizes(), c10::contiguous_strides(src.sizes()), src.scalar_type());
    device_copy_bytes(contiguous, src);
  }
  at::Tensor host = at::empty(src.sizes(), at::TensorOptions().dtype(src.scalar_type()));
  const std::size_t bytes = static_cast<std::size_t>(host.numel()) * host.itemsize();
  if (bytes > 0) {
    Session session;
    const DeviceSpan span = span_of(contiguous);
    const Status read = session.stream().read(
        *span.object, span.offset, std::span(static_cast<std::byte*>(host.data_ptr()), bytes));
    // Always waited for, even when the read failed part way: its chunks
    // land in `host`, which must not be freed (by the throw below) first.
    const Status synced = session.stream().synchronize();
    TORCH_CHECK(read.ok(), "malv: copying from the device: ", read.error().to_string());
    TORCH_CHECK(synced.ok(), "malv: ", synced.error().to_string());
  }
  host._set_conj(src.is_conj());
  host._set_neg(src.is_neg());
  dst.copy_(host);
}

// dst = self, whichever sides are on the device.
void copy_any(const at::Tensor& self, const at::Tensor& dst) {
  if (on_device(self) && on_device(dst)) {
    device_copy(dst, self);
  } else if (on_device(dst)) {
    copy_to_device(self, dst);
  } else {
    copy_to_cpu(self, dst);
  }
}

void copy_from(const c10::OperatorHandle&, torch::jit::Stack* stack) {
  // (Tensor self, Tensor dst, bool non_blocking) -> Tensor
  auto args = torch::jit::last(*stack, 3);
  at::Tensor dst = args[1].toTensor();
  copy_any(args[0].toTensor(), dst);
  torch::jit::drop(*stack, 3);
  torch::jit::push(*stack, std::move(dst));
}

void copy_from_and_resize(const c10::OperatorHandle&, torch::jit::Stack* stack) {
  // (Tensor self, Tensor dst) -> Tensor
  auto args = torch::jit::last(*stack, 2);
  const at::Tensor self = args[0].toTensor();
  at::Tensor dst = args[1].toTensor();
  if (on_device(dst)) {
    resize_device(dst, self.sizes());
  } else {
    dst.resize_(self.sizes());
  }
  copy_any(self, dst);
  torch::jit::drop(*stack, 2);
  torch::jit::push(*stack, std::move(dst));
}

// ---------------------------------------------------------------- views --
// Metadata only, in the guest: a view shares its base's storage.

void as_strided(const c10::OperatorHandle&, torch::jit::Stack* stack) {
  auto args = torch::jit::last(*stack, 4);
  const at::Tensor self = args[0].toTensor();
  const c10::optional<std::int64_t> offset =
      args[3].isNone() ? c10::nullopt : c10::optional<std::int64_t>(args[3].toInt());
  at::Tensor out =
      at::native::as_strided_tensorimpl(self, args[1].toIntVector(), args[2].toIntVector(), offset);
  torch::jit::drop(*stack, 4);
  torch::jit::push(*stack, std::move(out));
}

void view(const c10::OperatorHandle&, torch::jit::Stack* stack) {
  auto args = torch::jit::last(*stack, 2);
  at::Tensor out = at::native::view(args[0].toTensor(), args[1].toIntVector());
  torch::jit::drop(*stack, 2);
  torch::jit::push(*stack, std::move(out));
}

void reshape_alias(const c10::OperatorHandle&, torch::jit::Stack* stack) {
  auto args = torch::jit::last(*stack, 3);
  at::Tensor out =
      at::native::_reshape_alias(args[0].toTensor(), args[1].toIntVector(), args[2].toIntVector());
  torch::jit::drop(*stack, 3);
  torch::jit::push(*stack, std::move(out));
}

// ------------------------------------------------------------- fallback --

// A meta tensor of t's shape and dtype: what the meta kernels compute on.
at::Tensor meta_of(const at::Tensor& t) {
  if (!t.defined()) return t;
  if (!on_device(t)) return t;  // a CPU scalar stays what it is
  return at::empty_strided(t.sizes(), t.strides(), t.options().device(c10::kMeta));
}

bool holds_tensors(const c10::List<c10::IValue>& list) {
  bool any = false;
  for (const c10::IValue& e : list) any = any || e.isTensor();
  return any;
}

// `v` with each tensor in it replaced by what `each` makes of it: alone,
// in a tensor list, or (by `element`) in a list of optional tensors.
template <typename Each, typename Element>
c10::IValue map_tensors(const c10::IValue& v, Each each, Element element) {
  if (v.isTensor()) return each(v.toTensor());
  if (v.isTensorList()) {
    std::vector<at::Tensor> list;
    for (const at::Tensor& t : v.toTensorVector()) list.push_back(each(t));
    return list;
  }
  if (v.isList()) {
    const c10::List<c10::IValue> in = v.toList();
    if (!holds_tensors(in)) return v;
    c10::List<c10::optional<at::Tensor>> out;
    for (const c10::IValue& e : in) {
      if (e.isNone()) {
        out.push_back(c10::nullopt);
      } else {
        out.push_back(element(e.toTensor()));
      }
    }
    return out;
  }
  return v;
}

c10::IValue meta_value(const c10::IValue& v) { return map_tensors(v, meta_of, meta_of); }

int aliased_argument(const c10::FunctionSchema& schema, const c10::AliasInfo& alias);

// An operator whose output shapes only a run can tell (no meta kernel:
// nonzero, masked_select, unique ...): the guest's CPU runs it on copies of
// its device arguments, writes back what it wrote in place and moves its
// tensor results to the device. Counted (stats()["operators_in_guest"]).
void run_in_guest(const c10::OperatorHandle& op, torch::jit::Stack* stack,
                  const std::string& name) {
  const c10::FunctionSchema& schema = op.schema();
  const std::size_t n = schema.arguments().size();
  std::vector<c10::IValue> args(stack->end() - static_cast<std::ptrdiff_t>(n), stack->end());
  auto to_cpu = [](const at::Tensor& t) {
    if (!on_device(t)) return t;
    // The same strides where they address each element once; an expanded
    // view (stride 0) is copied whole, as writing it would be refused.
    at::Tensor host = t.is_non_overlapping_and_dense()
                          ? at::empty_strided(t.sizes(), t.strides(), t.options().device(c10::kCPU))
                          : at::empty(t.sizes(), t.options().device(c10::kCPU));
    copy_to_cpu(t, host);
    return host;
  };
  torch::jit::Stack cpu;
  for (const c10::IValue& v : args) {
    if (v.isTensor()) {
      cpu.push_back(to_cpu(v.toTensor()));
    } else if (v.isTensorList()) {
      std::vector<at::Tensor> list;
      for (const at::Tensor& t : v.toTensorVector()) list.push_back(to_cpu(t));
      cpu.push_back(list);
    } else if (v.isList() && holds_tensors(v.toList())) {
      c10::List<c10::optional<at::Tensor>> list;  // a Tensor?[] (indices)
      for (const c10::IValue& e : v.toList()) {
        list.push_back(e.isNone() ? c10::optional<at::Tensor>() : to_cpu(e.toTensor()));
      }
      cpu.push_back(list);
    } else {
      cpu.push_back(v);
    }
  }
  const std::vector<c10::IValue> cpu_args = cpu;
  op.callBoxed(&cpu);
  DeviceState::get().count_guest_operator();
  (void)name;
  // What it wrote in place goes back to the device tensors.
  const auto& arguments = schema.arguments();
  for (std::size_t i = 0; i < n; ++i) {
    const c10::AliasInfo* alias = arguments[i].alias_info();
    if (alias == nullptr || !alias->isWrite() || !args[i].isTensor()) continue;
    const at::Tensor real = args[i].toTensor();
    if (on_device(real)) {
      if (!real.sizes().equals(cpu_args[i].toTensor().sizes())) {
        resize_device(real, cpu_args[i].toTensor().sizes());
      }
      copy_to_device(cpu_args[i].toTensor(), real);
    }
  }
  torch::jit::drop(*stack, n);
  const auto& returns = schema.returns();
  for (std::size_t r = 0; r < returns.size(); ++r) {
    const c10::AliasInfo* alias = returns[r].alias_info();
    if (alias != nullptr) {
      const int index = aliased_argument(schema, *alias);
      TORCH_CHECK(index >= 0, "malv: return ", r, " aliases no argument");
      torch::jit::push(*stack, args[static_cast<std::size_t>(index)]);
      continue;
    }
    if (cpu[r].isTensor()) {
      const at::Tensor host = cpu[r].toTensor();
      at::Tensor out = empty_strided_device(host.sizes(), host.strides(), host.scalar_type());
      copy_to_device(host, out);
      torch::jit::push(*stack, out);
    } else if (cpu[r].isTensorList()) {
      std::vector<at::Tensor> list;
      for (const at::Tensor& host : cpu[r].toTensorVector()) {
        at::Tensor out = empty_strided_device(host.sizes(), host.strides(), host.scalar_type());
        copy_to_device(host, out);
        list.push_back(out);
      }
      torch::jit::push(*stack, list);
    } else {
      torch::jit::push(*stack, cpu[r]);
    }
  }
}

// The argument a mutable or view return aliases (the same alias set).
int aliased_argument(const c10::FunctionSchema& schema, const c10::AliasInfo& alias) {
  const auto& arguments = schema.arguments();
  for (std::size_t i = 0; i < arguments.size(); ++i) {
    const c10::AliasInfo* a = arguments[i].alias_info();
    if (a != nullptr && a->beforeSets() == alias.beforeSets()) return static_cast<int>(i);
  }
  return -1;
}

// A read-only argument with its math bits resolved: the host sees bytes,
// and the Conjugate key lets a few operators (mm, dot ...) through with the
// bit set, for kernels that read it; the host's tensors have none.
at::Tensor resolved(const at::Tensor& t) {
  if (!t.defined() || (!t.is_conj() && !t.is_neg())) return t;
  return t.resolve_conj().resolve_neg();
}

// A CPU index tensor (an element of a Tensor?[], the type indices have:
// index, index_put_) moved to the device, as PyTorch's indexing accepts CPU
// indices for a tensor on any device and moves them itself
// (at::native::make_info). Any other CPU tensor but a 0-dim one (a CPU
// scalar) is refused when it is encoded, as CUDA's kernels refuse it (many
// meta kernels do not check devices).
at::Tensor index_on_device(const at::Tensor& t) {
  if (!t.defined() || on_device(t)) return t;
  at::Tensor moved =
      empty_strided_device(t.sizes(), c10::contiguous_strides(t.sizes()), t.scalar_type());
  copy_to_device(t, moved);
  return moved;
}

// What the host is sent for a read-only argument.
c10::IValue for_the_host(const c10::IValue& v) {
  return map_tensors(v, resolved, [](const at::Tensor& t) { return index_on_device(resolved(t)); });
}

// The functional overload of an out= operator (nanmedian.dim for
// nanmedian.dim_values): the same name, the same arguments less those
// written, one return per argument written, none aliasing. Looked up once
// per operator.
std::optional<c10::OperatorHandle> functional_overload(const c10::OperatorHandle& op) {
  static std::mutex mu;
  static std::unordered_map<std::string, std::optional<c10::OperatorHandle>> found;
  const c10::FunctionSchema& schema = op.schema();
  const std::string key = operator_name(op);
  std::lock_guard lock(mu);
  if (auto it = found.find(key); it != found.end()) return it->second;
  std::vector<const c10::Argument*> read;
  std::size_t written = 0;
  for (const c10::Argument& a : schema.arguments()) {
    if (a.alias_info() != nullptr && a.alias_info()->isWrite()) {
      ++written;
    } else {
      read.push_back(&a);
    }
  }
  std::optional<c10::OperatorHandle> match;
  c10::Dispatcher& dispatcher = c10::Dispatcher::singleton();
  for (const c10::OperatorName& candidate : dispatcher.getAllOpNames()) {
    if (written == 0 || match || candidate.name != schema.name()) continue;
    const auto handle = dispatcher.findSchema(candidate);
    if (!handle) continue;
    const c10::FunctionSchema& other = handle->schema();
    bool same = other.arguments().size() == read.size() && other.returns().size() == written;
    for (std::size_t i = 0; same && i < read.size(); ++i) {
      const c10::Argument& a = other.arguments()[i];
      same =
          a.alias_info() == nullptr && a.name() == read[i]->name() && *a.type() == *read[i]->type();
    }
    for (const c10::Argument& r : other.returns()) same = same && r.alias_info() == nullptr;
    if (same) match = *handle;
  }
  found.emplace(key, match);
  return match;
}

// A view the fallback met (no explicit kernel), made from the meta
// kernel's geometry over the device tensor's storage. The meta base starts
// at offset 0, so the view's offset is the base's plus the meta view's;
// a view of another dtype (view_as_real, view_as_complex, view.dtype)
// counts its geometry in its own elements.
at::Tensor view_from_meta(const at::Tensor& base, const Geometry& shape) {
  if (shape.dtype == base.scalar_type()) {
    return at::native::as_strided_tensorimpl(base, shape.sizes, shape.strides,
                                             base.storage_offset() + shape.storage_offset);
  }
  const std::int64_t bytes = base.storage_offset() * static_cast<std::int64_t>(base.itemsize());
  const caffe2::TypeMeta dtype = c10::scalarTypeToTypeMeta(shape.dtype);
  const auto item = static_cast<std::int64_t>(dtype.itemsize());
  TORCH_CHECK(bytes % item == 0, "malv: a view of dtype ", shape.dtype, " at byte ", bytes,
              " of its storage is misaligned");
  auto impl = c10::make_intrusive<c10::TensorImpl>(
      c10::TensorImpl::VIEW, c10::Storage(base.storage()), base.key_set(), dtype);
  impl->set_sizes_and_strides(shape.sizes, shape.strides, bytes / item + shape.storage_offset);
  return at::Tensor(std::move(impl));
}

void fallback(const c10::OperatorHandle& op, torch::jit::Stack* stack) {
  const c10::FunctionSchema& schema = op.schema();
  const std::string& name = operator_name(op);
  const auto& arguments = schema.arguments();
  const auto& returns = schema.returns();
  const std::size_t n = arguments.size();
  std::vector<c10::IValue> args(stack->end() - static_cast<std::ptrdiff_t>(n), stack->end());

  // Random operators draw from the guest's generator, as the same call on
  // the CPU would (the host's generator is not the guest's; mirroring its
  // state is not built): they run on the guest's CPU.
  for (const c10::Argument& a : arguments) {
    const c10::TypePtr& type = a.real_type();
    const c10::TypePtr inner = type->kind() == c10::TypeKind::OptionalType
                                   ? type->castRaw<c10::OptionalType>()->getElementType()
                                   : type;
    if (inner->kind() == c10::TypeKind::GeneratorType) {
      run_in_guest(op, stack, name);
      return;
    }
  }

  // Output shapes from the meta kernel, and its checks, here in the guest;
  // an operator that returns no tensor and writes none needs no shapes.
  bool needs_shapes = false;
  for (const c10::Argument& r : returns) {
    const c10::TypePtr& type = r.type();
    needs_shapes = needs_shapes || type->kind() == c10::TypeKind::TensorType ||
                   type->kind() == c10::TypeKind::ListType || r.alias_info() != nullptr;
  }
  // The meta kernel's answer: kept per call signature (meta_shapes.h), so
  // a loop's later steps make no meta tensor and run no meta kernel.
  std::shared_ptr<const MetaAnswer> answer;
  Scratch<std::string> buffer;
  std::string& signature = buffer.get();
  const bool described = needs_shapes && call_signature(op, args, signature);
  if (described) answer = find_answer(signature);
  if (answer == nullptr) {
    torch::jit::Stack meta;
    if (needs_shapes) {
      // An output whose shape depends on the data (PyTorch's tag: nonzero,
      // repeat_interleave, unique ...): no meta kernel can give it.
      if (op.hasTag(at::Tag::dynamic_output_shape)) {
        run_in_guest(op, stack, name);
        return;
      }
      for (const c10::IValue& v : args) meta.push_back(meta_value(v));
      // Held across the call: an out= kernel's returns are references to its
      // arguments, which the boxed call pops first (the stack would be their
      // only owner).
      const std::vector<c10::IValue> meta_args = meta;
      try {
        op.callBoxed(&meta);
      } catch (const c10::NotImplementedError&) {
        // No meta kernel (or a data-dependent output shape: nonzero,
        // masked_select): the guest's own CPU runs it on copies.
        run_in_guest(op, stack, name);
        return;
      } catch (python_error& e) {
        // A Python meta kernel that cannot take the call's arguments (a
        // TypeError: 1.13's meta kernels of some out= operators take no out
        // arguments, nanmedian.dim_values). The functional overload's meta
        // kernel gives the shapes the out= tensors take; without one, the
        // guest's CPU runs it. Any other Python error is the kernel's check,
        // raised at the call. (The error is fetched either way: a
        // python_error leaves it set in the interpreter until then.)
        e.persist();
        bool type_error = false;
        {
          pybind11::gil_scoped_acquire gil;
          type_error = PyErr_GivenExceptionMatches(e.type, PyExc_TypeError) != 0;
        }
        if (!type_error) {
          e.restore();
          throw;
        }
        const std::optional<c10::OperatorHandle> functional = functional_overload(op);
        if (!functional) {
          run_in_guest(op, stack, name);
          return;
        }
        meta.clear();
        for (std::size_t i = 0; i < n; ++i) {
          const c10::AliasInfo* alias = arguments[i].alias_info();
          if (alias == nullptr || !alias->isWrite()) meta.push_back(meta_args[i]);
        }
        functional->callBoxed(&meta);
      }
      TORCH_CHECK(meta.size() == returns.size(), "malv: ", name, ": the meta kernel returned ",
                  meta.size(), " values for ", returns.size(), " returns");
    } else {
      meta.resize(returns.size());  // None: each a value the host returns
    }
    auto made = std::make_shared<const MetaAnswer>(answer_of(meta));
    if (described) keep_answer(signature, made);
    answer = std::move(made);
  }

  // Arguments written in place whose meta twin changed shape (an out=
  // tensor resized): the device tensor takes the same shape first.
  std::vector<c10::IValue> results(returns.size());
  std::vector<AtenValue> outputs;
  bool want_returns = false;
  for (std::size_t r = 0; r < returns.size(); ++r) {
    const c10::AliasInfo* alias = returns[r].alias_info();
    if (alias != nullptr) {
      const int index = aliased_argument(schema, *alias);
      TORCH_CHECK(index >= 0, "malv: ", name, ": return ", r, " aliases no argument");
      at::Tensor real = args[static_cast<std::size_t>(index)].toTensor();
      TORCH_CHECK((*answer)[r].kind == ReturnShape::Kind::kTensor, "malv: ", name, ": return ", r,
                  " aliases a tensor but the meta kernel returned none");
      const Geometry& shape = (*answer)[r].tensors[0];
      if (alias->isWrite()) {
        if (!real.sizes().equals(shape.sizes)) resize_device(real, shape.sizes);
        results[r] = real;
      } else {
        results[r] = view_from_meta(real, shape);
      }
      continue;
    }
    const ReturnShape& shaped = (*answer)[r];
    if (shaped.kind == ReturnShape::Kind::kTensor) {
      const Geometry& shape = shaped.tensors[0];
      at::Tensor out = empty_strided_device(shape.sizes, shape.strides, shape.dtype);
      outputs.push_back(AtenValue::tensor(view_of(out)));
      results[r] = out;
    } else if (shaped.kind == ReturnShape::Kind::kTensorList) {
      AtenValue list;
      list.tag = AtenTag::kTensorList;
      std::vector<at::Tensor> made;
      for (const Geometry& shape : shaped.tensors) {
        at::Tensor out = empty_strided_device(shape.sizes, shape.strides, shape.dtype);
        list.tensors.push_back(view_of(out));
        list.present.push_back(true);
        made.push_back(out);
      }
      outputs.push_back(std::move(list));
      results[r] = made;
    } else {
      want_returns = true;  // a value only the host's run can give
    }
  }
  // Mutable arguments without a return (batch norm's running statistics)
  // are written in place by the host: nothing to do here.

  // Only views (unfold, diagonal ...), made above from the meta geometry,
  // and nothing written: metadata only, nothing for the host to run.
  bool only_views = !want_returns && outputs.empty();
  for (std::size_t r = 0; r < returns.size() && only_views; ++r) {
    const c10::AliasInfo* alias = returns[r].alias_info();
    only_views = alias != nullptr && !alias->isWrite();
  }
  for (const c10::Argument& a : arguments) {
    only_views = only_views && (a.alias_info() == nullptr || !a.alias_info()->isWrite());
  }
  if (only_views && !returns.empty()) {
    torch::jit::drop(*stack, n);
    for (c10::IValue& v : results) torch::jit::push(*stack, std::move(v));
    return;
  }

  Scratch<std::vector<AtenValue>> scratch;
  std::vector<AtenValue>& values = scratch.get();
  std::size_t count = 0;
  auto next_value = [&]() -> AtenValue& {
    if (count == values.size()) values.emplace_back();
    return values[count++];
  };
  for (std::size_t i = 0; i < n; ++i) {
    const c10::AliasInfo* alias = arguments[i].alias_info();
    const bool read_only = alias == nullptr || !alias->isWrite();
    if (!read_only && args[i].isTensor()) {
      TORCH_CHECK_NOT_IMPLEMENTED(!args[i].toTensor().is_conj() && !args[i].toTensor().is_neg(),
                                  "malv: ", name, ": argument '", arguments[i].name(),
                                  "' is written and has a lazy conjugate or negative bit");
    }
    encode(next_value(), read_only ? for_the_host(args[i]) : args[i], arguments[i].real_type(),
           ArgumentName{name, arguments[i].name()});
  }
  for (AtenValue& out : outputs) next_value() = std::move(out);
  const std::vector<AtenValue> returned =
      send(name, std::span<const AtenValue>(values.data(), count), want_returns);
  std::size_t next = 0;
  for (std::size_t r = 0; r < returns.size(); ++r) {
    if (!results[r].isNone() || returns[r].alias_info() != nullptr) continue;
    TORCH_CHECK(next < returned.size(), "malv: ", name, ": the host returned ", returned.size(),
                " values");
    results[r] = decode_return(returned[next++]);
  }
  torch::jit::drop(*stack, n);
  for (c10::IValue& v : results) torch::jit::push(*stack, std::move(v));
}

// ---------------------------------------------------------- convolution --
// convolution_overrideable and its backward are what PyTorch calls for a
// backend it does not know; their composite kernels win over any fallback.
// They go to the host as aten::convolution / aten::convolution_backward,
// which take the same arguments, so the host runs the CPU's own kernels.

// Sends `args` as the host operator `host_op` (its schema types them),
// with `outputs` (undefined: an output not wanted) after them.
void send_as(const char* host_op, const std::vector<c10::IValue>& args,
             const std::vector<at::Tensor>& outputs) {
  const std::string name(host_op);
  const std::size_t dot = name.find('.');
  const auto handle = c10::Dispatcher::singleton().findSchemaOrThrow(
      name.substr(0, dot).c_str(), dot == std::string::npos ? "" : name.substr(dot + 1).c_str());
  const auto& arguments = handle.schema().arguments();
  TORCH_CHECK(arguments.size() == args.size(), "malv: ", name, " takes ", arguments.size(),
              " arguments");
  std::vector<AtenValue> values(args.size());
  for (std::size_t i = 0; i < args.size(); ++i) {
    encode(values[i], args[i], arguments[i].real_type(), ArgumentName{name, arguments[i].name()});
  }
  for (const at::Tensor& out : outputs) {
    values.push_back(out.defined() ? AtenValue::tensor(view_of(out)) : AtenValue::none());
  }
  send(name, values, false);
}

std::vector<std::int64_t> conv_output_size(const at::Tensor& input, const at::Tensor& weight,
                                           at::IntArrayRef stride, at::IntArrayRef padding,
                                           at::IntArrayRef dilation, bool transposed,
                                           at::IntArrayRef output_padding, std::int64_t groups) {
  const std::int64_t spatial = input.dim() - 2;
  TORCH_CHECK(spatial >= 1 && weight.dim() == input.dim(), "malv: convolution of a ", input.dim(),
              "-d input with a ", weight.dim(), "-d weight");
  auto at_or_last = [](at::IntArrayRef v, std::int64_t d) {
    return v.size() == 1 ? v[0] : v[static_cast<std::size_t>(d)];
  };
  std::vector<std::int64_t> out{input.size(0),
                                transposed ? weight.size(1) * groups : weight.size(0)};
  for (std::int64_t d = 0; d < spatial; ++d) {
    const std::int64_t in = input.size(d + 2), k = weight.size(d + 2);
    const std::int64_t s = at_or_last(stride, d), p = at_or_last(padding, d),
                       dil = at_or_last(dilation, d);
    std::int64_t size = 0;
    if (transposed) {
      const std::int64_t op = output_padding.empty() ? 0 : at_or_last(output_padding, d);
      size = (in - 1) * s - 2 * p + dil * (k - 1) + op + 1;
    } else {
      size = (in + 2 * p - dil * (k - 1) - 1) / s + 1;
    }
    TORCH_CHECK(size > 0, "malv: convolution output size ", size, " in dimension ", d + 2);
    out.push_back(size);
  }
  return out;
}

void convolution(const c10::OperatorHandle&, torch::jit::Stack* stack) {
  // (input, weight, bias?, stride, padding, dilation, transposed, output_padding, groups)
  std::vector<c10::IValue> args(stack->end() - 9, stack->end());
  const at::Tensor input = args[0].toTensor(), weight = args[1].toTensor();
  const auto size = conv_output_size(input, weight, args[3].toIntVector(), args[4].toIntVector(),
                                     args[5].toIntVector(), args[6].toBool(), args[7].toIntVector(),
                                     args[8].toInt());
  at::Tensor out = empty_strided_device(size, c10::contiguous_strides(size), input.scalar_type());
  send_as("aten::convolution", args, {out});
  torch::jit::drop(*stack, 9);
  torch::jit::push(*stack, std::move(out));
}

void convolution_backward(const c10::OperatorHandle&, torch::jit::Stack* stack) {
  // (grad_output, input, weight, stride, padding, dilation, transposed,
  //  output_padding, groups, bool[3] output_mask) -> (grad_input, grad_weight, grad_bias)
  std::vector<c10::IValue> args(stack->end() - 10, stack->end());
  const at::Tensor input = args[1].toTensor(), weight = args[2].toTensor();
  const bool transposed = args[6].toBool();
  const std::int64_t groups = args[8].toInt();
  const c10::List<bool> mask = args[9].toBoolList();
  const std::int64_t channels = transposed ? weight.size(1) * groups : weight.size(0);
  auto make = [](bool wanted, const at::Tensor& like) {
    return wanted ? empty_strided_device(like.sizes(), c10::contiguous_strides(like.sizes()),
                                         like.scalar_type())
                  : at::Tensor();
  };
  at::Tensor grad_input = make(mask[0], input), grad_weight = make(mask[1], weight);
  at::Tensor grad_bias =
      mask[2] ? empty_strided_device({channels}, {1}, weight.scalar_type()) : at::Tensor();
  // aten::convolution_backward(grad_output, input, weight, SymInt[]? bias_sizes, stride,
  //   padding, dilation, transposed, output_padding, groups, output_mask)
  std::vector<c10::IValue> host_args{args[0], args[1], args[2]};
  host_args.push_back(mask[2] ? c10::IValue(std::vector<std::int64_t>{channels}) : c10::IValue());
  for (std::size_t i = 3; i < 10; ++i) host_args.push_back(args[i]);
  send_as("aten::convolution_backward", host_args, {grad_input, grad_weight, grad_bias});
  torch::jit::drop(*stack, 10);
  torch::jit::push(*stack, std::move(grad_input));
  torch::jit::push(*stack, std::move(grad_weight));
  torch::jit::push(*stack, std::move(grad_bias));
}

}  // namespace
}  // namespace malv::torch_device

TORCH_LIBRARY_IMPL(aten, PrivateUse1, m) {
  using namespace malv::torch_device;
  m.impl("empty.memory_format", torch::CppFunction::makeFromBoxedFunction<&empty_memory_format>());
  m.impl("empty_strided", torch::CppFunction::makeFromBoxedFunction<&empty_strided>());
  m.impl("_copy_from", torch::CppFunction::makeFromBoxedFunction<&copy_from>());
  m.impl("_copy_from_and_resize",
         torch::CppFunction::makeFromBoxedFunction<&copy_from_and_resize>());
  m.impl("resize_", torch::CppFunction::makeFromBoxedFunction<&resize_>());
  m.impl("as_strided", torch::CppFunction::makeFromBoxedFunction<&as_strided>());
  m.impl("view", torch::CppFunction::makeFromBoxedFunction<&view>());
  m.impl("_reshape_alias", torch::CppFunction::makeFromBoxedFunction<&reshape_alias>());
  m.impl("convolution_overrideable", torch::CppFunction::makeFromBoxedFunction<&convolution>());
  // Operators whose composite kernel would decompose on PrivateUse1 where
  // the CPU has a kernel of its own: forwarded whole, so the host runs the
  // CPU's computation and the results match it (docs/torch.md). Only
  // operators with an autograd formula of their own: a CompositeImplicit
  // one registered here would lose its backward.
  for (const char* forwarded : {"native_layer_norm", "native_group_norm", "addr"}) {
    m.impl(forwarded, torch::CppFunction::makeFromBoxedFunction<&fallback>());
  }
  m.impl("convolution_backward_overrideable",
         torch::CppFunction::makeFromBoxedFunction<&convolution_backward>());
}

// PyTorch's Conjugate and Negative keys materialise a tensor's lazy bit
// with clone, whose copy reaches _copy_from; with no kernel of theirs for
// _copy_from, their fallback would clone again, without end. The device's
// copies apply the bits themselves (device_copy, copy_to_cpu).
TORCH_LIBRARY_IMPL(aten, Conjugate, m) {
  m.impl("_copy_from", torch::CppFunction::makeFallthrough());
  m.impl("_copy_from_and_resize", torch::CppFunction::makeFallthrough());
}

TORCH_LIBRARY_IMPL(aten, Negative, m) {
  m.impl("_copy_from", torch::CppFunction::makeFallthrough());
  m.impl("_copy_from_and_resize", torch::CppFunction::makeFallthrough());
}

TORCH_LIBRARY_IMPL(_, PrivateUse1, m) {
  m.fallback(torch::CppFunction::makeFromBoxedFunction<&malv::torch_device::fallback>());
}

namespace malv::torch_device {
c10::Allocator* device_allocator() { return &g_allocator; }
}  // namespace malv::torch_device
