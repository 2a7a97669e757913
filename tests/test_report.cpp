// Tests for the training report: CSV round-trip and structural checks on the SVG plot.

#include "cnn/report.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstddef>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

namespace cnn {
namespace {

// Plausible, decreasing-loss / increasing-accuracy metrics for epochs 1..n.
std::vector<EpochMetrics> make_epochs(int n) {
  std::vector<EpochMetrics> epochs;
  for (int e = 1; e <= n; ++e) {
    EpochMetrics m;
    m.epoch = e;
    m.train_loss = 2.3 * std::exp(-0.3 * e) + 0.05;
    m.test_loss = 2.3 * std::exp(-0.25 * e) + 0.12;
    m.train_accuracy = 1.0 - 0.9 * std::exp(-0.4 * e);
    m.test_accuracy = 0.97 - 0.85 * std::exp(-0.35 * e);
    m.seconds = 10.5 + e;
    epochs.push_back(m);
  }
  return epochs;
}

std::vector<std::string> split(const std::string& text, char separator) {
  std::vector<std::string> parts;
  std::stringstream stream(text);
  std::string part;
  while (std::getline(stream, part, separator)) parts.push_back(part);
  return parts;
}

std::size_t count(const std::string& haystack, const std::string& needle) {
  std::size_t n = 0;
  for (std::size_t at = haystack.find(needle); at != std::string::npos;
       at = haystack.find(needle, at + needle.size())) {
    ++n;
  }
  return n;
}

std::string trim(const std::string& text) {
  const char* space = " \t\r\n";
  const std::size_t first = text.find_first_not_of(space);
  if (first == std::string::npos) return "";
  return text.substr(first, text.find_last_not_of(space) - first + 1);
}

// Checks that every opening tag has a matching closing tag, in order. Self-closing tags, the
// XML declaration and comments are skipped. Good enough for the flat SVG we generate; returns
// an empty string when balanced, otherwise a description of the first problem.
std::string check_tags_balanced(const std::string& xml) {
  std::vector<std::string> stack;
  std::size_t pos = 0;
  while ((pos = xml.find('<', pos)) != std::string::npos) {
    const std::size_t end = xml.find('>', pos);
    if (end == std::string::npos) return "unterminated tag at " + std::to_string(pos);
    const std::string tag = xml.substr(pos + 1, end - pos - 1);
    pos = end + 1;
    if (tag.empty()) return "empty tag";
    if (tag[0] == '?' || tag[0] == '!') continue;
    if (tag.back() == '/') continue;
    const bool closing = tag[0] == '/';
    const std::string body = closing ? tag.substr(1) : tag;
    const std::string name = body.substr(0, body.find_first_of(" \t\r\n"));
    if (!closing) {
      stack.push_back(name);
    } else if (stack.empty() || stack.back() != name) {
      return "unexpected </" + name + ">";
    } else {
      stack.pop_back();
    }
  }
  return stack.empty() ? "" : "unclosed <" + stack.back() + ">";
}

// The structural properties every generated SVG must have.
void expect_valid_svg(const std::string& svg) {
  const std::string trimmed = trim(svg);
  EXPECT_EQ(trimmed.rfind("<svg", 0), 0u) << "does not start with <svg";
  ASSERT_GE(trimmed.size(), 6u);
  EXPECT_EQ(trimmed.substr(trimmed.size() - 6), "</svg>");
  EXPECT_EQ(check_tags_balanced(svg), "");
  EXPECT_NE(svg.find("width=\"900\""), std::string::npos);
  EXPECT_NE(svg.find("height=\"360\""), std::string::npos);
  EXPECT_EQ(svg.find("nan"), std::string::npos) << "non-finite coordinate leaked into the SVG";
  EXPECT_EQ(svg.find("inf"), std::string::npos) << "non-finite coordinate leaked into the SVG";
}

TEST(MetricsCsv, HeaderAndRoundTrip) {
  EpochMetrics m;
  m.epoch = 7;
  // Values with at most 9 significant digits, which %.9g reproduces exactly.
  m.train_loss = 0.123456789;
  m.train_accuracy = 0.9375;
  m.test_loss = 2.30258509;
  m.test_accuracy = 0.871;
  m.seconds = 12345.6789;
  const std::vector<std::string> lines = split(metrics_csv({m}), '\n');
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0], "epoch,train_loss,train_accuracy,test_loss,test_accuracy,seconds");
  const std::vector<std::string> fields = split(lines[1], ',');
  ASSERT_EQ(fields.size(), 6u);
  EXPECT_EQ(fields[0], "7");
  EXPECT_EQ(std::stod(fields[1]), m.train_loss);
  EXPECT_EQ(std::stod(fields[2]), m.train_accuracy);
  EXPECT_EQ(std::stod(fields[3]), m.test_loss);
  EXPECT_EQ(std::stod(fields[4]), m.test_accuracy);
  EXPECT_EQ(std::stod(fields[5]), m.seconds);
}

TEST(MetricsCsv, FloatValuesRoundTripAsFloat) {
  // Metrics usually come from float training code; %.9g is enough to recover every float.
  EpochMetrics m;
  m.epoch = 1;
  m.train_loss = 0.1f;
  m.train_accuracy = 1.0f / 3.0f;
  m.test_loss = 3.14159274f;
  m.test_accuracy = 0.999999f;
  m.seconds = 1e-7f;
  const std::vector<std::string> fields = split(split(metrics_csv({m}), '\n')[1], ',');
  ASSERT_EQ(fields.size(), 6u);
  EXPECT_EQ(static_cast<float>(std::stod(fields[1])), static_cast<float>(m.train_loss));
  EXPECT_EQ(static_cast<float>(std::stod(fields[2])), static_cast<float>(m.train_accuracy));
  EXPECT_EQ(static_cast<float>(std::stod(fields[3])), static_cast<float>(m.test_loss));
  EXPECT_EQ(static_cast<float>(std::stod(fields[4])), static_cast<float>(m.test_accuracy));
  EXPECT_EQ(static_cast<float>(std::stod(fields[5])), static_cast<float>(m.seconds));
}

TEST(MetricsCsv, OneLinePerEpoch) {
  const std::vector<std::string> lines = split(metrics_csv(make_epochs(5)), '\n');
  ASSERT_EQ(lines.size(), 6u);
  EXPECT_EQ(lines[5].substr(0, 2), "5,");
  EXPECT_EQ(split(metrics_csv({}), '\n').size(), 1u);  // header only
}

TEST(LearningCurvesSvg, WellFormedWithEscapedTitle) {
  const std::string svg = learning_curves_svg(make_epochs(12), "MNIST & <LeNet>");
  expect_valid_svg(svg);
  EXPECT_NE(svg.find("MNIST &amp; &lt;LeNet&gt;"), std::string::npos);
  EXPECT_EQ(svg.find("<LeNet>"), std::string::npos);
  EXPECT_NE(svg.find("Loss"), std::string::npos);
  EXPECT_NE(svg.find("Accuracy"), std::string::npos);
  EXPECT_NE(svg.find("#1f77b4"), std::string::npos);
  EXPECT_NE(svg.find("#d62728"), std::string::npos);
  EXPECT_NE(svg.find("stroke-dasharray"), std::string::npos);
  EXPECT_EQ(count(svg, "<circle"), 4u * 12u);
}

TEST(LearningCurvesSvg, SingleEpoch) {
  const std::string svg = learning_curves_svg(make_epochs(1), "one epoch");
  expect_valid_svg(svg);
  EXPECT_EQ(count(svg, "<circle"), 4u);
  EXPECT_NE(svg.find("one epoch"), std::string::npos);
}

TEST(LearningCurvesSvg, ConstantSeries) {
  // Every value equal: both y ranges are degenerate and must be padded.
  std::vector<EpochMetrics> epochs = make_epochs(3);
  for (EpochMetrics& m : epochs) m.train_loss = m.test_loss = m.train_accuracy = 0.5;
  for (EpochMetrics& m : epochs) m.test_accuracy = 0.5;
  const std::string svg = learning_curves_svg(epochs, "flat");
  expect_valid_svg(svg);
  EXPECT_EQ(count(svg, "<circle"), 12u);
}

TEST(LearningCurvesSvg, ManyEpochsThinsXLabels) {
  const std::string svg = learning_curves_svg(make_epochs(40), "long run");
  expect_valid_svg(svg);
  EXPECT_EQ(count(svg, "<circle"), 4u * 40u);
  // Text ending in text-anchor="middle"> is the x tick labels plus the two "Epoch" axis titles
  // (the document title carries further attributes). Each panel labels at most ~10 epochs.
  const std::size_t x_labels = count(svg, "text-anchor=\"middle\">") - 2;
  EXPECT_LE(x_labels, 2u * 10u);
  EXPECT_GE(x_labels, 2u * 4u);
}

TEST(LearningCurvesSvg, SkipsNonFiniteValues) {
  std::vector<EpochMetrics> epochs = make_epochs(6);
  epochs[2].test_loss = std::numeric_limits<double>::quiet_NaN();
  epochs[4].train_accuracy = std::numeric_limits<double>::infinity();
  const std::string svg = learning_curves_svg(epochs, "with gaps");
  expect_valid_svg(svg);
  EXPECT_EQ(count(svg, "<circle"), 4u * 6u - 2u);
}

TEST(LearningCurvesSvg, EmptyAndAllNaN) {
  expect_valid_svg(learning_curves_svg({}, "empty"));
  EXPECT_EQ(count(learning_curves_svg({}, "empty"), "<circle"), 0u);

  std::vector<EpochMetrics> epochs = make_epochs(2);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  for (EpochMetrics& m : epochs) m.train_loss = m.test_loss = nan;
  const std::string svg = learning_curves_svg(epochs, "no loss");
  expect_valid_svg(svg);
  EXPECT_EQ(count(svg, "<circle"), 4u);  // only the accuracy points remain
}

}  // namespace
}  // namespace cnn
