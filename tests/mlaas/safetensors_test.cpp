// .safetensors reading/writing and the MLP file layout: good files round
// trip, bad ones are refused with a reason.
#include "mlaas/safetensors.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "mlaas/mlp.h"

namespace malv::mlaas {
namespace {

// A file with the given JSON header and data bytes.
std::vector<std::uint8_t> raw_file(const std::string& json, std::size_t data_bytes) {
  std::vector<std::uint8_t> bytes(8 + json.size() + data_bytes, 0);
  std::uint64_t n = json.size();
  for (int i = 0; i < 8; ++i)
    bytes[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(n >> (8 * i));
  std::memcpy(bytes.data() + 8, json.data(), json.size());
  return bytes;
}

void expect_rejected(const std::vector<std::uint8_t>& bytes, const std::string& needle) {
  auto file = parse_safetensors(bytes, "test.safetensors");
  ASSERT_FALSE(file.ok()) << needle;
  EXPECT_NE(file.error().message().find(needle), std::string::npos) << file.error().message();
  EXPECT_NE(file.error().message().find("test.safetensors"), std::string::npos);
}

SafetensorsFile small_file() {
  SafetensorsFile file;
  file.tensors["w"] = TensorF32{{2, 3}, {1, 2, 3, 4, 5, 6}};
  file.tensors["b"] = TensorF32{{2}, {-1, 1}};
  file.metadata["format"] = "test";
  return file;
}

TEST(Safetensors, AWrittenFileReadsBackTheSame) {
  std::vector<std::uint8_t> bytes = encode_safetensors(small_file()).value();
  SafetensorsFile back = parse_safetensors(bytes, "mem").value();
  EXPECT_EQ(back.tensors.at("w").shape, (std::vector<std::int64_t>{2, 3}));
  EXPECT_EQ(back.tensors.at("w").data, (std::vector<float>{1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(back.tensors.at("b").data, (std::vector<float>{-1, 1}));
  EXPECT_EQ(back.metadata.at("format"), "test");
  // The data section starts 8-byte aligned.
  std::uint64_t header = 0;
  std::memcpy(&header, bytes.data(), 8);
  EXPECT_EQ((8 + header) % 8, 0u);
}

TEST(Safetensors, ATruncatedFileIsRejected) {
  std::vector<std::uint8_t> bytes = encode_safetensors(small_file()).value();
  bytes.resize(bytes.size() - 4);
  expect_rejected(bytes, "out of range");
  expect_rejected(std::vector<std::uint8_t>(bytes.begin(), bytes.begin() + 5), "truncated");
  expect_rejected(std::vector<std::uint8_t>(bytes.begin(), bytes.begin() + 20), "truncated");
}

TEST(Safetensors, AnotherDtypeIsRejected) {
  expect_rejected(raw_file(R"({"w":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}})", 4),
                  "dtype F16");
}

TEST(Safetensors, AShapeThatDisagreesWithItsBytesIsRejected) {
  expect_rejected(raw_file(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8),
                  "3 floats");
}

TEST(Safetensors, OverlappingTensorsAreRejected) {
  expect_rejected(raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                           R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                           12),
                  "overlap");
}

TEST(Safetensors, MalformedHeadersAreRejected) {
  expect_rejected(raw_file("{not json", 0), "not a JSON object");
  expect_rejected(raw_file(R"({"w":{"dtype":"F32","shape":[1]}})", 4), "data_offsets");
  expect_rejected(raw_file(R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4),
                  "negative");
  expect_rejected(raw_file(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}})", 8),
                  "out of range");
  std::vector<std::uint8_t> huge(16, 0xff);
  expect_rejected(huge, "limit");
}

TEST(Safetensors, AFileThatIsNotThereIsNotFound) {
  EXPECT_EQ(read_safetensors("/nonexistent.safetensors").error().code(), ErrorCode::kNotFound);
}

Mlp two_layer_mlp() {
  std::vector<DenseLayer> layers(2);
  layers[0] = DenseLayer{2, 3, {1, 0, 0, 1, 1, 1}, {0, 0, -5}, Activation::kRelu};
  layers[1] = DenseLayer{3, 1, {1, 2, 3}, {0.5f}, Activation::kIdentity};
  return Mlp::create(std::move(layers)).value();
}

TEST(MlpFile, AnMlpSavesAndLoadsWithItsActivations) {
  std::string path = ::testing::TempDir() + "/mlp_roundtrip.safetensors";
  ASSERT_TRUE(two_layer_mlp().save(path).ok());
  Mlp back = Mlp::load(path).value();
  ASSERT_EQ(back.layers().size(), 2u);
  EXPECT_EQ(back.layers()[0].activation, Activation::kRelu);
  EXPECT_EQ(back.input_dim(), 2u);
  EXPECT_EQ(back.output_dim(), 1u);
  float in[2] = {1, 2};
  float out = 0;
  back.infer_cpu(in, 1, &out);
  // hidden = relu(1, 2, 3-5) = (1, 2, 0); out = 1 + 4 + 0 + 0.5
  EXPECT_FLOAT_EQ(out, 5.5f);
}

TEST(MlpFile, LayersThatDoNotChainAreRejected) {
  SafetensorsFile file = two_layer_mlp().to_safetensors();
  file.tensors["layers.1.weight"] = TensorF32{{1, 4}, {1, 2, 3, 4}};
  auto mlp = Mlp::from_safetensors(file, "bad.safetensors");
  ASSERT_FALSE(mlp.ok());
  EXPECT_NE(mlp.error().message().find("layer 1 takes 4 inputs"), std::string::npos)
      << mlp.error().message();
}

TEST(MlpFile, AMissingBiasOrBadActivationIsRejected) {
  SafetensorsFile file = two_layer_mlp().to_safetensors();
  file.tensors.erase("layers.1.bias");
  EXPECT_NE(Mlp::from_safetensors(file, "f").error().message().find("without bias"),
            std::string::npos);
  file = two_layer_mlp().to_safetensors();
  file.metadata["activations"] = "relu,swish";
  EXPECT_NE(Mlp::from_safetensors(file, "f").error().message().find("swish"), std::string::npos);
  file.metadata["activations"] = "relu";
  EXPECT_NE(Mlp::from_safetensors(file, "f").error().message().find("1 activations for 2"),
            std::string::npos);
  file = two_layer_mlp().to_safetensors();
  file.tensors["layers.0.bias"] = TensorF32{{2}, {0, 0}};
  EXPECT_FALSE(Mlp::from_safetensors(file, "f").ok());
}

}  // namespace
}  // namespace malv::mlaas
