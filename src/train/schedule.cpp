#include "cnn/schedule.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "cnn/error.hpp"

namespace cnn {

namespace {
constexpr double kPi = 3.14159265358979323846;

/// OneCycleLR's "cos" annealing from `start` to `end` at fraction `pct` of a phase.
double anneal_cos(double start, double end, double pct) {
  return end + (start - end) / 2.0 * (std::cos(kPi * pct) + 1);
}
}  // namespace

const char* schedule_name(LrSchedule schedule) {
  switch (schedule) {
    case LrSchedule::kConstant:
      return "constant";
    case LrSchedule::kStep:
      return "step";
    case LrSchedule::kCosine:
      return "cosine";
    case LrSchedule::kOneCycle:
      return "onecycle";
  }
  return "?";
}

LrSchedule parse_schedule(const std::string& name) {
  for (LrSchedule s :
       {LrSchedule::kConstant, LrSchedule::kStep, LrSchedule::kCosine, LrSchedule::kOneCycle}) {
    if (name == schedule_name(s)) return s;
  }
  throw Error("--schedule: expects constant, step, cosine or onecycle, got '" + name + "'");
}

void validate(const ScheduleOptions& o) {
  const auto require = [](bool ok, const std::string& message) {
    if (!ok) throw Error("learning-rate schedule: " + message);
  };
  require(std::isfinite(o.lr) && o.lr > 0, "expected lr > 0, got " + std::to_string(o.lr));
  require(o.total_steps >= 1, "expected at least 1 step, got " + std::to_string(o.total_steps));
  require(o.warmup_steps >= 0 && o.warmup_steps < o.total_steps,
          "expected warm-up steps in [0, " + std::to_string(o.total_steps) + "), got " +
              std::to_string(o.warmup_steps));
  require(std::isfinite(o.warmup_start) && o.warmup_start > 0 && o.warmup_start <= 1,
          "expected a warm-up start factor in (0, 1], got " + std::to_string(o.warmup_start));
  require(o.step_size >= 1, "expected a step size >= 1, got " + std::to_string(o.step_size));
  require(std::isfinite(o.gamma) && o.gamma > 0 && o.gamma <= 1,
          "expected gamma in (0, 1], got " + std::to_string(o.gamma));
  require(std::isfinite(o.pct_start) && o.pct_start > 0 && o.pct_start < 1,
          "expected pct_start in (0, 1), got " + std::to_string(o.pct_start));
  require(std::isfinite(o.div_factor) && o.div_factor >= 1 && std::isfinite(o.final_div_factor) &&
              o.final_div_factor >= 1,
          "expected div_factor and final_div_factor >= 1");
  if (o.kind == LrSchedule::kOneCycle) {
    // OneCycleLR needs its rising phase to end after step 0 and before the last step. The
    // message gives the fewest steps that allow it: the run's length is epochs x batches an
    // epoch, which a batch as large as the data set makes 1 an epoch.
    if (o.warmup_steps > 0) {
      require(o.warmup_steps >= 2,
              "onecycle rises over its warm-up, which needs at least 2 "
              "steps, got " +
                  std::to_string(o.warmup_steps) + " (a longer warm-up, or a smaller batch)");
    } else {
      int64_t fewest = std::max<int64_t>(3, static_cast<int64_t>(1 / o.pct_start) + 1);
      while (o.pct_start * double(fewest) - 1 <= 0) ++fewest;
      const double rise_end = o.pct_start * double(o.total_steps) - 1;
      char percent[32];
      std::snprintf(percent, sizeof percent, "%g%%", 100 * o.pct_start);
      require(o.total_steps >= 3 && rise_end > 0 && rise_end < double(o.total_steps - 1),
              std::string("onecycle rises over the first ") + percent +
                  " of its steps and needs at least " + std::to_string(fewest) + ", got " +
                  std::to_string(o.total_steps) + " (more epochs, or a smaller batch)");
    }
  }
}

double scheduled_lr(const ScheduleOptions& o, int64_t step) {
  if (o.kind == LrSchedule::kOneCycle) {
    // OneCycleLR (two phases): step_num = step, phases end at pct T - 1 and T - 1.
    const double pct =
        o.warmup_steps > 0 ? double(o.warmup_steps) / double(o.total_steps) : o.pct_start;
    const double initial = o.lr / o.div_factor, minimum = initial / o.final_div_factor;
    const double rise_end = pct * double(o.total_steps) - 1, last = double(o.total_steps - 1);
    const double t = double(step);
    if (t <= rise_end) return anneal_cos(initial, o.lr, t / rise_end);
    return anneal_cos(o.lr, minimum, (t - rise_end) / (last - rise_end));
  }
  if (step < o.warmup_steps) {
    // LinearLR: start + (1 - start) t / W.
    return o.lr * (o.warmup_start + (1 - o.warmup_start) * double(step) / double(o.warmup_steps));
  }
  const int64_t t = step - o.warmup_steps, steps = o.total_steps - o.warmup_steps;
  switch (o.kind) {
    case LrSchedule::kConstant:
      return o.lr;
    case LrSchedule::kStep:
      return o.lr * std::pow(o.gamma, double(t / o.step_size));
    case LrSchedule::kCosine: {
      // The same expression as before the schedules had options, so that the default run's
      // model file stays bit for bit the same.
      const double progress = double(t) / double(steps);
      return std::max(o.lr * 0.5 * (1 + std::cos(kPi * progress)), o.lr * 1e-4);
    }
    case LrSchedule::kOneCycle:
      break;
  }
  return o.lr;
}

}  // namespace cnn
