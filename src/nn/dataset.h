// The dataset loaders as nn/ sees them: data/dataset.h, whose formats the
// host's data pipeline shares, named in nn's namespace.
#pragma once

#include "data/dataset.h"
#include "data/rng.h"

namespace malv::nn {

using data::Dataset;
using data::IdxImages;
using data::kFashionMnistDir;
using data::kFashionMnistStandardise;
using data::kIdxImagesMagic;
using data::kIdxLabelsMagic;
using data::load_fashion_mnist;
using data::load_idx_images;
using data::load_idx_labels;
using data::load_raw_f32;
using data::load_raw_u8;
using data::make_dataset;
using data::Normalisation;
using data::Split;

using data::derive_seed;
using data::Rng;
using data::shuffled_indices;

}  // namespace malv::nn
