#include "bench/models.h"

#include <cmath>
#include <vector>

namespace malv::bench {

Result<mlaas::Mlp> random_mlp(const ModelCase& shape, std::mt19937& rng) {
  auto layer = [&rng](std::size_t in, std::size_t out, mlaas::Activation act) {
    std::uniform_real_distribution<float> w(-1.0f, 1.0f);
    const float scale = 1.0f / std::sqrt(static_cast<float>(in));
    mlaas::DenseLayer l{.in = in, .out = out, .activation = act};
    l.weight.resize(in * out);
    l.bias.resize(out);
    for (float& v : l.weight) v = w(rng) * scale;
    for (float& v : l.bias) v = w(rng) * 0.1f;
    return l;
  };
  std::vector<mlaas::DenseLayer> layers;
  layers.push_back(layer(shape.in, shape.hidden, mlaas::Activation::kRelu));
  layers.push_back(layer(shape.hidden, shape.out, shape.last));
  return mlaas::Mlp::create(std::move(layers));
}

}  // namespace malv::bench
