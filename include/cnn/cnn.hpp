#pragma once
// The whole public API of the cnn library.

#include "cnn/data.hpp"
#include "cnn/error.hpp"
#include "cnn/init.hpp"
#include "cnn/layers.hpp"
#include "cnn/loss.hpp"
#include "cnn/model.hpp"
#include "cnn/ops.hpp"
#include "cnn/ops_ref.hpp"
#include "cnn/optim.hpp"
#include "cnn/rng.hpp"
#include "cnn/safetensors.hpp"
#include "cnn/shape.hpp"
#include "cnn/tensor.hpp"
