#pragma once
// The generic contract checker (design.md, "The layer contract"), in the manner of dlib's
// test_layer: one mechanical check of every clause, for every layer and loss, in double
// precision.
//
// For a layer, with random x, parameters and upstream dy, and loss f = dot(layer(x), dy):
//  1. forward writes every element of y (y is pre-filled with NaN);
//  2. forward gives the same y in kTrain and kEval mode, unless the layer's modes differ by
//     design (Dropout, BatchNorm): then every clause below is checked in `mode`, that mode's
//     own function, and the test runs the check once per mode; a kEval forward leaves the
//     buffers (random positive values) unchanged;
//  3. backward assigns every element of dx (pre-filled with NaN, then with garbage on a
//     second call: both calls must give the same dx);
//  4. backward accumulates into parameter gradients (pre-filled with a known value; after two
//     calls they must hold that value plus twice the gradient);
//  5. the analytic dL/dx and dL/dparameter agree with central differences to `tolerance`
//     (relative), using a fourth-order stencil on per-element output differences, so that
//     outputs an input does not touch cancel exactly.
// Points where the function is not smooth (ReLU at 0, a max-pool tie, within the stencil) are
// detected from the disagreement of two step sizes and skipped; more than
// `max_skip_fraction` skipped points is itself a failure, so the check cannot pass vacuously.

#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "cnn/layers.hpp"
#include "cnn/loss.hpp"
#include "cnn/rng.hpp"

namespace cnn::testing {

struct CheckOptions {
  uint64_t seed = 1;
  // For layers whose kTrain and kEval forwards differ (clause 2 does not apply): the mode whose
  // forward and backward are checked. Layers with train-time randomness hold it fixed first
  // (Dropout::hold_mask).
  bool modes_differ = false;
  Mode mode = Mode::kTrain;
  double step = 1e-4;
  double tolerance = 1e-6;
  // Relative error is |a - n| / max(|a|, |n|, floor): gradients far below the floor are
  // compared absolutely, since their finite-difference estimate has an absolute error floor.
  double floor = 1e-3;
  // At most this many elements of x and of each parameter tensor are differenced (a random
  // sample when there are more); every element is checked for NaN / assign / accumulate.
  int max_points_per_tensor = 2000;
  double max_skip_fraction = 0.05;
  // Standard deviation of the generated inputs: ReLU6's upper kink at 6 is reached only by
  // wider inputs than N(0, 1).
  double input_scale = 1.0;
  // Lower bound of |x| for generated inputs of layers with a kink at 0 is not needed: kinks
  // are detected. Inputs are N(0, input_scale^2); parameters N(0, 0.5).
};

struct CheckReport {
  std::vector<std::string> failures;
  int64_t points_checked = 0;
  int64_t points_skipped = 0;
  double max_relative_error = 0.0;
  bool ok() const { return failures.empty(); }
  std::string summary() const {
    std::ostringstream out;
    out << (ok() ? "OK" : "NOT OK") << ": " << points_checked << " points, " << points_skipped
        << " skipped at kinks, max relative error " << max_relative_error;
    for (const std::string& f : failures) out << "\n  " << f;
    return out.str();
  }
};

namespace detail {

inline void fill_normal(std::vector<double>& v, Rng& rng, double scale) {
  for (double& e : v) e = scale * rng.normal();
}

/// Indices 0..n-1, or a random sample of `limit` of them.
inline std::vector<int64_t> sample_points(int64_t n, int limit, Rng& rng) {
  std::vector<int64_t> all(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) all[static_cast<size_t>(i)] = i;
  if (n <= limit) return all;
  rng.shuffle(all.begin(), all.end());
  all.resize(static_cast<size_t>(limit));
  return all;
}

/// Compares analytic gradient `analytic` at point `what` against the finite differences of
/// `delta(e)`, which returns f(v + e) - f(v) computed as a sum of per-element differences.
class Differencer {
 public:
  Differencer(const CheckOptions& options, CheckReport& report)
      : options_(options), report_(report) {}

  void check(const std::string& what, double analytic, const std::function<double(double)>& delta) {
    const double h = options_.step;
    const double d1 = delta(h) - delta(-h);          // f(v+h) - f(v-h)
    const double d2 = delta(2 * h) - delta(-2 * h);  // f(v+2h) - f(v-2h)
    const double central = d1 / (2 * h);
    const double wide = d2 / (4 * h);
    const double numeric = (8 * d1 - d2) / (12 * h);
    // A smooth function makes the two central differences agree to O(h^2 f'''); a kink
    // inside the stencil makes them differ by O(slope jump).
    if (std::abs(central - wide) > 1e-5 * std::max(1.0, std::abs(central))) {
      ++report_.points_skipped;
      return;
    }
    ++report_.points_checked;
    const double scale = std::max({std::abs(analytic), std::abs(numeric), options_.floor});
    const double relative = std::abs(analytic - numeric) / scale;
    report_.max_relative_error = std::max(report_.max_relative_error, relative);
    if (!(relative <= options_.tolerance) && report_.failures.size() < 10) {
      std::ostringstream out;
      out.precision(12);
      out << what << ": analytic " << analytic << " vs finite difference " << numeric
          << " (relative error " << relative << ")";
      report_.failures.push_back(out.str());
    }
  }

  void finish() {
    const int64_t total = report_.points_checked + report_.points_skipped;
    if (total > 0 && static_cast<double>(report_.points_skipped) >
                         options_.max_skip_fraction * static_cast<double>(total)) {
      report_.failures.push_back("skipped " + std::to_string(report_.points_skipped) + " of " +
                                 std::to_string(total) + " points as kinks: too many to trust");
    }
    if (report_.points_checked == 0) report_.failures.push_back("no point was checked");
  }

 private:
  const CheckOptions& options_;
  CheckReport& report_;
};

inline double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

}  // namespace detail

/// Checks every clause of the layer contract for `layer` on inputs of `input_shape`.
inline CheckReport check_layer(Layer<double>& layer, const Shape& input_shape,
                               const CheckOptions& options = {}) {
  CheckReport report;
  Rng rng(options.seed);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double prefill = 0.375;  // known gradient pre-fill, exact in binary
  const Shape out_shape = layer.output_shape(input_shape);
  const int64_t nx = input_shape.numel(), ny = out_shape.numel();
  const int64_t np = layer.parameter_count();

  std::vector<double> params(static_cast<size_t>(np)), grads(static_cast<size_t>(np));
  std::vector<double> x(static_cast<size_t>(nx)), dy(static_cast<size_t>(ny));
  detail::fill_normal(params, rng, 0.5);
  detail::fill_normal(x, rng, options.input_scale);
  detail::fill_normal(dy, rng, 1.0);
  layer.bind_parameters(params.data(), grads.data());
  // Buffers (running statistics) get positive random values, a valid variance and an
  // evaluation-mode map that is not the identity.
  std::vector<double> buffers(static_cast<size_t>(layer.buffer_count()));
  for (double& b : buffers) b = 0.5 + 0.5 * std::abs(rng.normal());
  layer.bind_buffers(buffers.data());

  const auto run_forward = [&](const std::vector<double>& input, Mode mode) {
    std::vector<double> y(static_cast<size_t>(ny), nan);
    layer.forward({input.data(), input_shape}, {y.data(), out_shape}, mode);
    return y;
  };

  // 1, 2: forward writes everything and (unless modes_differ) does not depend on the mode. The
  // checked mode runs last, so that backward follows its forward. A kEval forward leaves the
  // buffers as they were.
  const std::vector<double> buffers_before = buffers;
  const std::vector<double> y_eval = run_forward(x, Mode::kEval);
  if (buffers != buffers_before) report.failures.push_back("a kEval forward changed a buffer");
  const std::vector<double> y = run_forward(x, options.modes_differ ? options.mode : Mode::kTrain);
  for (int64_t i = 0; i < ny; ++i) {
    if (std::isnan(y[static_cast<size_t>(i)])) {
      report.failures.push_back("forward left y[" + std::to_string(i) + "] unwritten (NaN)");
      break;
    }
  }
  if (!options.modes_differ && y != y_eval) {
    report.failures.push_back("forward differs between kTrain and kEval");
  }
  const Mode mode = options.modes_differ ? options.mode : Mode::kTrain;

  // 3, 4: backward assigns dx and accumulates parameter gradients.
  std::vector<double> dx(static_cast<size_t>(nx), nan);
  std::fill(grads.begin(), grads.end(), prefill);
  layer.backward({x.data(), input_shape}, {y.data(), out_shape}, {dy.data(), out_shape},
                 {dx.data(), input_shape});
  for (int64_t i = 0; i < nx; ++i) {
    if (std::isnan(dx[static_cast<size_t>(i)])) {
      report.failures.push_back("backward left dx[" + std::to_string(i) + "] unwritten (NaN)");
      break;
    }
  }
  std::vector<double> param_grad(static_cast<size_t>(np));
  for (int64_t i = 0; i < np; ++i)
    param_grad[static_cast<size_t>(i)] = grads[static_cast<size_t>(i)] - prefill;
  std::vector<double> dx_again(static_cast<size_t>(nx), 12345.0);
  layer.backward({x.data(), input_shape}, {y.data(), out_shape}, {dy.data(), out_shape},
                 {dx_again.data(), input_shape});
  if (dx_again != dx) {
    report.failures.push_back("backward does not assign dx: a second call over garbage differs");
  }
  for (int64_t i = 0; i < np; ++i) {
    const double expected = prefill + 2 * param_grad[static_cast<size_t>(i)];
    if (std::abs(grads[static_cast<size_t>(i)] - expected) >
        1e-9 * std::max(1.0, std::abs(expected))) {
      report.failures.push_back(
          "backward does not accumulate parameter gradient " + std::to_string(i) +
          ": after two calls over " + std::to_string(prefill) + " it holds " +
          std::to_string(grads[static_cast<size_t>(i)]) + ", expected " + std::to_string(expected));
      break;
    }
  }

  // 5: finite differences, for x and for every parameter tensor.
  detail::Differencer differencer(options, report);
  std::vector<double> probe = x;
  for (int64_t i : detail::sample_points(nx, options.max_points_per_tensor, rng)) {
    const size_t k = static_cast<size_t>(i);
    differencer.check("dL/dx[" + std::to_string(i) + "]", dx[k], [&](double e) {
      probe[k] = x[k] + e;
      const std::vector<double> shifted = run_forward(probe, mode);
      probe[k] = x[k];
      double s = 0;
      for (int64_t j = 0; j < ny; ++j) {
        const size_t m = static_cast<size_t>(j);
        s += (shifted[m] - y[m]) * dy[m];
      }
      return s;
    });
  }
  const std::vector<ParamSpec> specs = layer.parameter_specs();
  int64_t offset = 0;
  for (const ParamSpec& spec : specs) {
    for (int64_t i :
         detail::sample_points(spec.shape.numel(), options.max_points_per_tensor, rng)) {
      const size_t k = static_cast<size_t>(offset + i);
      const double saved = params[k];
      differencer.check("dL/d" + spec.name + "[" + std::to_string(i) + "]", param_grad[k],
                        [&](double e) {
                          params[k] = saved + e;
                          const std::vector<double> shifted = run_forward(x, mode);
                          params[k] = saved;
                          double s = 0;
                          for (int64_t j = 0; j < ny; ++j) {
                            const size_t m = static_cast<size_t>(j);
                            s += (shifted[m] - y[m]) * dy[m];
                          }
                          return s;
                        });
    }
    offset += spec.shape.numel();
  }
  differencer.finish();
  return report;
}

/// Checks a loss: backward assigns every element of dprediction, and agrees with central
/// differences of forward. `prediction` and `target` are fixed inputs chosen by the caller
/// (a loss's valid inputs depend on the loss).
inline CheckReport check_loss(Loss<double>& loss, const std::vector<double>& prediction,
                              const Shape& prediction_shape, const std::vector<double>& target,
                              const Shape& target_shape, const CheckOptions& options = {}) {
  CheckReport report;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  std::vector<double> p = prediction;
  const TensorView<const double> t(target.data(), target_shape);
  const double value = loss.forward({p.data(), prediction_shape}, t);
  if (!std::isfinite(value)) report.failures.push_back("forward is not finite");
  std::vector<double> dp(p.size(), nan);
  loss.backward({p.data(), prediction_shape}, t, {dp.data(), prediction_shape});
  for (size_t i = 0; i < dp.size(); ++i) {
    if (std::isnan(dp[i])) {
      report.failures.push_back("backward left dprediction[" + std::to_string(i) + "] unwritten");
      break;
    }
  }
  std::vector<double> again(p.size(), 12345.0);
  loss.backward({p.data(), prediction_shape}, t, {again.data(), prediction_shape});
  if (again != dp) report.failures.push_back("backward does not assign dprediction");

  Rng rng(options.seed);
  detail::Differencer differencer(options, report);
  for (int64_t i :
       detail::sample_points(static_cast<int64_t>(p.size()), options.max_points_per_tensor, rng)) {
    const size_t k = static_cast<size_t>(i);
    const double saved = p[k];
    differencer.check("dL/dprediction[" + std::to_string(i) + "]", dp[k], [&](double e) {
      p[k] = saved + e;
      const double shifted = loss.forward({p.data(), prediction_shape}, t);
      p[k] = saved;
      return shifted - value;
    });
  }
  differencer.finish();
  return report;
}

}  // namespace cnn::testing
