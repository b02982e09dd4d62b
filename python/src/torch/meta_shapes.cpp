// Meta kernels' answers by call signature (meta_shapes.h).
#include "meta_shapes.h"

#include <cstring>
#include <unordered_map>

namespace malv::torch_device {
namespace {

// Answers kept per thread; a new signature past this many empties them.
constexpr std::size_t kMaxAnswers = 4096;

Geometry geometry_of(const at::Tensor& t) {
  return Geometry{{t.sizes().begin(), t.sizes().end()},
                  {t.strides().begin(), t.strides().end()},
                  t.storage_offset(),
                  t.scalar_type()};
}

void put(std::string& key, const void* data, std::size_t bytes) {
  key.append(static_cast<const char*>(data), bytes);
}
void put_word(std::string& key, std::int64_t word) { put(key, &word, sizeof(word)); }
void put_tag(std::string& key, char tag) { key.push_back(tag); }

// What the meta kernel sees of a tensor (meta_of in device_ops.cpp): its
// sizes, strides and dtype, not its storage offset or data; a CPU scalar
// is passed as it is (its dtype and wrapped-number flag steer promotion).
void put_tensor(std::string& key, const at::Tensor& t) {
  if (!t.defined()) {
    put_tag(key, 'u');
    return;
  }
  put_tag(key, 't');
  put_word(key, static_cast<std::int64_t>(t.device().type()));
  put_word(key, static_cast<std::int64_t>(t.scalar_type()));
  put_word(key, t.unsafeGetTensorImpl()->is_wrapped_number() ? 1 : 0);
  put_word(key, t.dim());
  put(key, t.sizes().data(), t.sizes().size() * sizeof(std::int64_t));
  put(key, t.strides().data(), t.strides().size() * sizeof(std::int64_t));
}

bool put_value(std::string& key, const c10::IValue& v) {
  if (v.isTensor()) {
    put_tensor(key, v.toTensor());
  } else if (v.isNone()) {
    put_tag(key, 'n');
  } else if (v.isBool()) {
    put_tag(key, 'b');
    put_word(key, v.toBool() ? 1 : 0);
  } else if (v.isInt()) {  // also ScalarType, Layout, MemoryFormat
    put_tag(key, 'i');
    put_word(key, v.toInt());
  } else if (v.isDouble()) {
    put_tag(key, 'd');
    const double d = v.toDouble();
    put(key, &d, sizeof(d));
  } else if (v.isComplexDouble()) {
    put_tag(key, 'c');
    const c10::complex<double> c = v.toComplexDouble();
    put(key, &c, sizeof(c));
  } else if (v.isIntList()) {
    put_tag(key, 'I');
    const auto list = v.toIntList();
    put_word(key, static_cast<std::int64_t>(list.size()));
    for (const std::int64_t i : list) put_word(key, i);
  } else if (v.isDoubleList()) {
    put_tag(key, 'D');
    const auto list = v.toDoubleList();
    put_word(key, static_cast<std::int64_t>(list.size()));
    for (const double d : list) put(key, &d, sizeof(d));
  } else if (v.isBoolList()) {
    put_tag(key, 'B');
    const auto list = v.toBoolList();
    put_word(key, static_cast<std::int64_t>(list.size()));
    for (const bool b : list) put_word(key, b ? 1 : 0);
  } else if (v.isString()) {
    put_tag(key, 's');
    const std::string& s = v.toStringRef();
    put_word(key, static_cast<std::int64_t>(s.size()));
    key.append(s);
  } else if (v.isDevice()) {
    put_tag(key, 'v');
    put_word(key, static_cast<std::int64_t>(v.toDevice().type()));
    put_word(key, v.toDevice().index());
  } else {
    return false;  // tensor lists, generators, ...: not kept
  }
  return true;
}

std::unordered_map<std::string, std::shared_ptr<const MetaAnswer>>& answers() {
  thread_local std::unordered_map<std::string, std::shared_ptr<const MetaAnswer>> kept;
  return kept;
}

}  // namespace

MetaAnswer answer_of(const std::vector<c10::IValue>& meta_returns) {
  MetaAnswer answer(meta_returns.size());
  for (std::size_t r = 0; r < meta_returns.size(); ++r) {
    const c10::IValue& v = meta_returns[r];
    if (v.isTensor()) {
      answer[r].kind = ReturnShape::Kind::kTensor;
      answer[r].tensors.push_back(geometry_of(v.toTensor()));
    } else if (v.isTensorList()) {
      answer[r].kind = ReturnShape::Kind::kTensorList;
      for (const at::Tensor& t : v.toTensorVector()) answer[r].tensors.push_back(geometry_of(t));
    }
  }
  return answer;
}

bool call_signature(const c10::OperatorHandle& op, const std::vector<c10::IValue>& args,
                    std::string& key) {
  key.clear();
  const void* schema = &op.schema();
  put(key, &schema, sizeof(schema));
  for (const c10::IValue& v : args) {
    if (!put_value(key, v)) return false;
  }
  return true;
}

std::shared_ptr<const MetaAnswer> find_answer(const std::string& signature) {
  auto& kept = answers();
  auto it = kept.find(signature);
  return it == kept.end() ? nullptr : it->second;
}

void keep_answer(const std::string& signature, std::shared_ptr<const MetaAnswer> answer) {
  auto& kept = answers();
  if (kept.size() >= kMaxAnswers) kept.clear();
  kept.emplace(signature, std::move(answer));
}

}  // namespace malv::torch_device
