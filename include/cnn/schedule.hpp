#pragma once
// Learning-rate schedules, per optimizer step, each equal to a PyTorch scheduler stepped once
// per optimizer step (tests/golden/schedules.safetensors holds PyTorch's values):
//   constant  lr                                       LambdaLR(lambda t: 1)
//   step      lr * gamma^floor(t / step_size)          StepLR(step_size, gamma)
//   cosine    lr * (1 + cos(pi t / T)) / 2, at least   CosineAnnealingLR(T_max=T, eta_min=0)
//             lr * 1e-4 (the optimizers refuse 0)
//   onecycle  from lr / div_factor up to lr over the   OneCycleLR(max_lr=lr, total_steps=T,
//             first pct_start of the steps, then down   pct_start, anneal_strategy="cos",
//             to lr / (div_factor final_div_factor),    div_factor, final_div_factor)
//             both along half cosines
// A linear warm-up of W steps (constant, step, cosine) rises from lr * warmup_start to lr, and
// the schedule then runs over the remaining T - W steps: SequentialLR([LinearLR(start_factor=
// warmup_start, total_iters=W), schedule], milestones=[W]). One-cycle has its own rise; W, when
// given, sets it (pct_start = W / T).
// Only the learning rate is scheduled: SGD's momentum and Adam's beta1 stay as set, which is
// OneCycleLR with cycle_momentum=False (PyTorch's default, True, also moves the momentum
// between 0.95 and 0.85 against the rate, overriding --momentum).

#include <cstdint>
#include <string>

namespace cnn {

enum class LrSchedule { kConstant, kStep, kCosine, kOneCycle };

/// "constant", "step", "cosine", "onecycle".
const char* schedule_name(LrSchedule schedule);
/// The schedule called `name`; throws cnn::Error "--schedule: expects constant, step, cosine or
/// onecycle, got '<name>'".
LrSchedule parse_schedule(const std::string& name);

struct ScheduleOptions {
  LrSchedule kind = LrSchedule::kCosine;
  double lr = 0.05;                                // the base rate (one-cycle: the peak)
  int64_t total_steps = 1;                         // optimizer steps in the whole run (T)
  int64_t warmup_steps = 0;                        // W
  double warmup_start = 0.01;                      // the warm-up's first rate, as a fraction of lr
  int64_t step_size = 1;                           // step: steps between decays
  double gamma = 0.1;                              // step: the decay factor
  double pct_start = 0.3;                          // onecycle, when warmup_steps is 0
  double div_factor = 25, final_div_factor = 1e4;  // onecycle
};

/// Throws cnn::Error naming the field when the options cannot describe a schedule (lr <= 0,
/// total_steps < 1, warmup_steps outside [0, total_steps), ...) or give a rate that the
/// optimizers' float cannot hold: lr above float's largest value, or a first or last rate that
/// is 0 as a float (a step schedule decayed too often, a tiny warm-up start, a huge one-cycle
/// div_factor), naming the setting. train_model calls it before the first step.
void validate(const ScheduleOptions& options);

/// The learning rate of optimizer step `step` (0-based). Throws cnn::Error for a step outside
/// [0, total_steps) and for options that validate() refuses for their fields (it does not
/// repeat validate's check of the rates' range, which runs once before training).
double scheduled_lr(const ScheduleOptions& options, int64_t step);

}  // namespace cnn
