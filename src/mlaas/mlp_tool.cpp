// malv-mlp-tool: writes and inspects the .safetensors MLP files that MLaaS
// modules ship (format in mlp.h and docs/mlaas-abi.md).
//
//   malv-mlp-tool init model.safetensors 4,16,1 relu,identity [seed]
//       writes an MLP with the given layer widths, activations, and small
//       random weights (a starting point for a module's model)
//   malv-mlp-tool info model.safetensors
//       checks a file and prints its layers
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "mlaas/mlp.h"

namespace {

std::vector<std::string> split(const std::string& text) {
  std::vector<std::string> parts;
  std::size_t start = 0;
  while (true) {
    std::size_t comma = text.find(',', start);
    parts.push_back(text.substr(start, comma - start));
    if (comma == std::string::npos) return parts;
    start = comma + 1;
  }
}

int usage() {
  std::fprintf(stderr,
               "usage: malv-mlp-tool init OUT.safetensors WIDTHS ACTIVATIONS [SEED]\n"
               "       malv-mlp-tool info FILE.safetensors\n"
               "  WIDTHS: comma-separated, input first (4,16,1)\n"
               "  ACTIVATIONS: one per layer (relu,identity)\n");
  return 2;
}

int init(int argc, char** argv) {
  using namespace malv::mlaas;
  if (argc < 5) return usage();
  std::vector<std::size_t> widths;
  for (const std::string& w : split(argv[3]))
    widths.push_back(std::strtoul(w.c_str(), nullptr, 10));
  std::vector<std::string> activations = split(argv[4]);
  if (widths.size() < 2 || activations.size() != widths.size() - 1) {
    std::fprintf(stderr, "need one activation per layer (%zu layers)\n",
                 widths.size() < 2 ? 0 : widths.size() - 1);
    return 2;
  }
  std::mt19937 rng(argc > 5 ? static_cast<unsigned>(std::strtoul(argv[5], nullptr, 10)) : 1u);
  std::vector<DenseLayer> layers;
  for (std::size_t i = 0; i + 1 < widths.size(); ++i) {
    DenseLayer layer;
    layer.in = widths[i];
    layer.out = widths[i + 1];
    auto activation = parse_activation(activations[i]);
    if (!activation.ok()) {
      std::fprintf(stderr, "%s\n", activation.error().to_string().c_str());
      return 2;
    }
    layer.activation = *activation;
    std::normal_distribution<float> dist(0.0f, 1.0f / std::sqrt(static_cast<float>(layer.in)));
    layer.weight.resize(layer.in * layer.out);
    for (float& w : layer.weight) w = dist(rng);
    layer.bias.assign(layer.out, 0.0f);
    layers.push_back(std::move(layer));
  }
  auto mlp = Mlp::create(std::move(layers));
  if (!mlp.ok()) {
    std::fprintf(stderr, "%s\n", mlp.error().to_string().c_str());
    return 1;
  }
  auto saved = mlp->save(argv[2]);
  if (!saved.ok()) {
    std::fprintf(stderr, "%s\n", saved.error().to_string().c_str());
    return 1;
  }
  std::printf("wrote %s: %s\n", argv[2], mlp->shape_key().c_str());
  return 0;
}

int info(int argc, char** argv) {
  using namespace malv::mlaas;
  if (argc < 3) return usage();
  auto mlp = Mlp::load(argv[2]);
  if (!mlp.ok()) {
    std::fprintf(stderr, "%s\n", mlp.error().to_string().c_str());
    return 1;
  }
  std::printf("%s: %zu inputs, %zu outputs\n", argv[2], mlp->input_dim(), mlp->output_dim());
  for (std::size_t i = 0; i < mlp->layers().size(); ++i) {
    const DenseLayer& l = mlp->layers()[i];
    std::printf("  layer %zu: %zu -> %zu %s\n", i, l.in, l.out,
                std::string(activation_name(l.activation)).c_str());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return usage();
  std::string_view command = argv[1];
  if (command == "init") return init(argc, argv);
  if (command == "info") return info(argc, argv);
  return usage();
}
