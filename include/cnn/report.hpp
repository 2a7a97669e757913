#pragma once
// Per-epoch training metrics, written as CSV and as an SVG plot of the learning curves.
#include <string>
#include <vector>
namespace cnn {
/// Metrics of one epoch. Accuracies are fractions in [0, 1].
struct EpochMetrics {
  int epoch = 0;
  double train_loss = 0, train_accuracy = 0, test_loss = 0, test_accuracy = 0, seconds = 0;
};
/// CSV text: header "epoch,train_loss,train_accuracy,test_loss,test_accuracy,seconds" then one
/// line per epoch; numbers printed with enough digits to round-trip (%.9g; epoch as integer).
std::string metrics_csv(const std::vector<EpochMetrics>& epochs);
/// A self-contained SVG document (width 900, height 360) with two panels side by side:
/// "Loss" (train and test loss per epoch) and "Accuracy" (train and test accuracy, in percent).
/// Each panel has axes, 4-6 labelled y ticks with "nice" round values, x ticks at the epochs
/// (thin them to at most ~10 labels when there are many epochs), a legend (train = solid
/// #1f77b4 line, test = dashed #d62728 line), circles at the data points, and `title` above.
/// Works for 1 epoch (a single point per series, axis range padded so it does not divide by
/// zero) and for non-finite values (skip those points). Text is XML-escaped.
std::string learning_curves_svg(const std::vector<EpochMetrics>& epochs, const std::string& title);
}  // namespace cnn
