#include "cnn/schedule.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "cnn/error.hpp"
#include "optim_checks.hpp"

namespace cnn {

namespace {
constexpr double kPi = 3.14159265358979323846;

/// v with 6 significant digits: std::to_string wrote 1e-50 as "0.000000".
std::string number(double v) {
  return detail::number_text(v);
}

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

namespace {

[[noreturn]] void fail(const std::string& message) {
  throw Error("learning-rate schedule: " + message);
}

/// The checks of the options themselves, which scheduled_lr runs at every step too: each
/// builds its message only when it fails.
void check_fields(const ScheduleOptions& o) {
  if (!(std::isfinite(o.lr) && o.lr > 0)) fail("expected lr > 0, got " + number(o.lr));
  if (o.total_steps < 1) fail("expected at least 1 step, got " + std::to_string(o.total_steps));
  if (o.warmup_steps < 0 || o.warmup_steps >= o.total_steps) {
    fail("expected warm-up steps in [0, " + std::to_string(o.total_steps) + "), got " +
         std::to_string(o.warmup_steps));
  }
  if (!(std::isfinite(o.warmup_start) && o.warmup_start > 0 && o.warmup_start <= 1))
    fail("expected a warm-up start factor in (0, 1], got " + number(o.warmup_start));
  if (o.step_size < 1) fail("expected a step size >= 1, got " + std::to_string(o.step_size));
  if (!(std::isfinite(o.gamma) && o.gamma > 0 && o.gamma <= 1))
    fail("expected gamma in (0, 1], got " + number(o.gamma));
  if (!(std::isfinite(o.pct_start) && o.pct_start > 0 && o.pct_start < 1))
    fail("expected pct_start in (0, 1), got " + number(o.pct_start));
  if (!(std::isfinite(o.div_factor) && o.div_factor >= 1 && std::isfinite(o.final_div_factor) &&
        o.final_div_factor >= 1)) {
    fail("expected div_factor and final_div_factor >= 1, got " + number(o.div_factor) + " and " +
         number(o.final_div_factor));
  }
  if (o.kind == LrSchedule::kOneCycle) {
    // OneCycleLR needs its rising phase to end after step 0 and before the last step. The
    // message gives the fewest steps that allow it: the run's length is epochs x batches an
    // epoch, which a batch as large as the data set makes 1 an epoch.
    if (o.warmup_steps > 0) {
      if (o.warmup_steps < 2) {
        fail("onecycle rises over its warm-up, which needs at least 2 steps, got " +
             std::to_string(o.warmup_steps) + " (a longer warm-up, or a smaller batch)");
      }
    } else {
      const double rise_end = o.pct_start * double(o.total_steps) - 1;
      if (!(o.total_steps >= 3 && rise_end > 0 && rise_end < double(o.total_steps - 1))) {
        int64_t fewest = std::max<int64_t>(3, static_cast<int64_t>(1 / o.pct_start) + 1);
        while (o.pct_start * double(fewest) - 1 <= 0) ++fewest;
        char percent[32];
        std::snprintf(percent, sizeof percent, "%g%%", 100 * o.pct_start);
        fail(std::string("onecycle rises over the first ") + percent +
             " of its steps and needs at least " + std::to_string(fewest) + ", got " +
             std::to_string(o.total_steps) + " (more epochs, or a smaller batch)");
      }
    }
  }
}

/// The rate of step `step` of options that passed check_fields.
double rate(const ScheduleOptions& o, int64_t step) {
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

}  // namespace

void validate(const ScheduleOptions& o) {
  check_fields(o);
  // The rates as the float the optimizers compute in, which refuse 0 and infinity: a step
  // schedule of 400 decays by 0.1 reached 0 and failed mid-run in SGD's set_lr ("expected lr
  // > 0, got 0.000000"), a div_factor of 1e300 passed here and failed at the first step. Every
  // schedule's largest rate is lr and its smallest the first step's (a warm-up's or
  // one-cycle's start) or the last step's (each decays to its end).
  if (!detail::finite_as<float>(o.lr))
    fail("expected lr finite as a float (the optimizers' type), got " + number(o.lr));
  const auto refuse_zero = [&](const std::string& which, double value, const std::string& hint) {
    fail(which + " is " + number(value) + ", 0 as a float (the optimizers' type; expected a rate " +
         "above 0: " + hint + ")");
  };
  const double first = rate(o, 0), last = rate(o, o.total_steps - 1);
  if (!detail::positive_as<float>(first)) {
    if (o.kind == LrSchedule::kOneCycle) {
      refuse_zero(
          "onecycle's first rate lr / div_factor = " + number(o.lr) + " / " + number(o.div_factor),
          first, "a smaller div_factor or a larger lr");
    }
    refuse_zero("the warm-up's first rate lr x warmup_start = " + number(o.lr) + " x " +
                    number(o.warmup_start),
                first, "a larger warm-up start or lr");
  }
  if (!detail::positive_as<float>(last)) {
    switch (o.kind) {
      case LrSchedule::kStep:
        refuse_zero("the step schedule's last rate lr x gamma^" +
                        std::to_string((o.total_steps - 1 - o.warmup_steps) / o.step_size) + " = " +
                        number(o.lr) + " x " + number(o.gamma) + "^" +
                        std::to_string((o.total_steps - 1 - o.warmup_steps) / o.step_size),
                    last, "fewer decays: a longer step size, fewer steps or a gamma nearer 1");
        break;
      case LrSchedule::kOneCycle:
        refuse_zero("onecycle's last rate lr / (div_factor x final_div_factor) = " + number(o.lr) +
                        " / (" + number(o.div_factor) + " x " + number(o.final_div_factor) + ")",
                    last, "a smaller div_factor or final_div_factor");
        break;
      default:
        refuse_zero("the last rate", last, "a larger lr");
    }
  }
}

double scheduled_lr(const ScheduleOptions& o, int64_t step) {
  // A step outside the run, or options validate() refuses, gave -inf, NaN or a division by 0.
  check_fields(o);
  if (step < 0 || step >= o.total_steps) {
    fail("expected a step in [0, " + std::to_string(o.total_steps) + "), got " +
         std::to_string(step));
  }
  return rate(o, step);
}

}  // namespace cnn
