// Training report output: metrics as CSV, learning curves as a hand-written SVG.
// The SVG is built with plain string formatting so the library needs no plotting dependency;
// the layout constants below are tuned for the fixed 900 x 360 canvas.

#include "cnn/report.hpp"

#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <string>
#include <vector>

namespace cnn {

namespace {

// snprintf into a std::string. Every call site passes a literal format, so the compiler still
// checks the arguments through the wrapper's attribute.
[[gnu::format(printf, 1, 2)]] std::string format(const char* fmt, ...);

std::string format(const char* fmt, ...) {
  va_list args, retry;
  va_start(args, fmt);
  va_copy(retry, args);
  // Almost everything fits the stack buffer; a longer result (e.g. %.1f of a huge value) is
  // formatted again at its exact size rather than truncated, which would corrupt the SVG.
  char buffer[256];
  const int n = std::max(0, std::vsnprintf(buffer, sizeof buffer, fmt, args));
  std::string out;
  if (static_cast<size_t>(n) < sizeof buffer) {
    out.assign(buffer, static_cast<size_t>(n));
  } else {
    out.resize(static_cast<size_t>(n));
    std::vsnprintf(out.data(), out.size() + 1, fmt, retry);
  }
  va_end(retry);
  va_end(args);
  return out;
}

// Escapes the five XML special characters so user text (the title) cannot break the document.
std::string xml_escape(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&apos;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

// Canvas layout. Each panel gets half the width; the margins leave room for the document title,
// the panel heading with its legend, the y tick labels and the x tick labels plus "Epoch".
constexpr double kWidth = 900, kHeight = 360;
constexpr double kPanelWidth = kWidth / 2;
constexpr double kMarginLeft = 64, kMarginRight = 20, kPlotTop = 70, kPlotBottom = 300;
// Data points are inset from the vertical axes so the first and last circles are not cut by
// the axis lines.
constexpr double kInsetX = 12;
constexpr int kMaxXLabels = 10;
constexpr const char* kTrainColor = "#1f77b4";
constexpr const char* kTestColor = "#d62728";

// A linear y axis with round tick values: lo + i * step for i in [0, count).
struct Ticks {
  double lo = 0, hi = 1, step = 0.25;
  int count = 5;
  int decimals = 2;  // digits after the point needed to print every tick exactly
};

// Number of ticks a step needs to cover [min, max] with multiples of the step. The small
// tolerance keeps e.g. max = 0.3 with step 0.1 from rounding up to 0.4.
int tick_count(double min, double max, double step) {
  const double eps = 1e-9;
  return static_cast<int>(std::ceil(max / step - eps) - std::floor(min / step + eps)) + 1;
}

// Picks the smallest step of the form {1, 2, 2.5, 5} x 10^k that covers [min, max] with at most
// six ticks. Because consecutive candidate steps differ by at most a factor of two, the first
// one that fits still needs at least four ticks, which gives the 4-6 the plot promises.
Ticks nice_ticks(double min, double max) {
  if (!std::isfinite(min) || !std::isfinite(max) || !std::isfinite(max - min)) {
    min = 0;  // no usable data (or a range too large to represent): show a plain unit axis
    max = 1;
  }
  // A single point or a flat series has no range; pad it so the scale is well defined.
  if (max - min <= 1e-9 * std::max(1.0, std::fabs(max))) {
    const double pad = max != 0 ? 0.1 * std::fabs(max) : 1.0;
    min -= pad;
    max += pad;
  }
  static constexpr double kMantissas[] = {1, 2, 2.5, 5};
  // Start two decades below the range, where any step needs far more than six ticks.
  double decade = std::pow(10.0, std::floor(std::log10(max - min)) - 2);
  Ticks ticks;
  for (int attempt = 0; attempt < 20; ++attempt, decade *= 10) {
    for (double mantissa : kMantissas) {
      const double step = mantissa * decade;
      const int count = tick_count(min, max, step);
      if (count > 6) continue;
      ticks.step = step;
      ticks.count = count;
      ticks.lo = std::floor(min / step + 1e-9) * step;
      ticks.hi = ticks.lo + (count - 1) * step;
      // Decimals: the first power of ten that makes the step an integer.
      ticks.decimals = 0;
      for (double scaled = step; ticks.decimals < 12; scaled *= 10, ++ticks.decimals) {
        if (std::fabs(scaled - std::round(scaled)) < 1e-6 * scaled) break;
      }
      return ticks;
    }
  }
  return ticks;  // unreachable for finite input; the bounded loop only guards against surprises
}

std::string tick_label(double value, int decimals) {
  std::string text = format("%.*f", decimals, value);
  // A tick at zero computed as -0.0 (or -1e-17) would print as "-0"; drop the sign.
  if (text.find_first_not_of("-0.") == std::string::npos && text[0] == '-') text.erase(0, 1);
  return text;
}

// Epochs that get an x label: all of them when few; otherwise multiples of a round stride
// (1, 2, 5, 10, 20, 50, ...) so the labels read naturally. If the epochs are irregular and
// such multiples are too few to label the axis, every k-th epoch instead.
std::vector<int> x_label_epochs(const std::vector<int>& epochs) {
  if (epochs.size() <= static_cast<size_t>(kMaxXLabels)) return epochs;
  std::vector<int> picked;
  for (int stride : {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000}) {
    picked.clear();
    for (int e : epochs) {
      if (e % stride == 0) picked.push_back(e);
    }
    // Larger strides only pick fewer epochs, so stop at the first that fits.
    if (picked.size() <= static_cast<size_t>(kMaxXLabels)) break;
  }
  if (picked.size() >= 2 && picked.size() <= static_cast<size_t>(kMaxXLabels)) return picked;
  picked.clear();
  const size_t every = (epochs.size() + kMaxXLabels - 1) / kMaxXLabels;
  for (size_t i = 0; i < epochs.size(); i += every) picked.push_back(epochs[i]);
  return picked;
}

struct Series {
  std::vector<double> values;  // one per epoch, in plotting order; non-finite ones are skipped
  const char* color;
  bool dashed;
};

// Draws one panel whose left edge is at x0: grid, axes, ticks, heading, legend and the series.
void draw_panel(std::string& svg, double x0, const char* heading, const std::vector<int>& epochs,
                const std::vector<Series>& series) {
  const double left = x0 + kMarginLeft, right = x0 + kPanelWidth - kMarginRight;
  const double top = kPlotTop, bottom = kPlotBottom;

  double min = INFINITY, max = -INFINITY;
  for (const Series& s : series) {
    for (double v : s.values) {
      if (!std::isfinite(v)) continue;
      min = std::min(min, v);
      max = std::max(max, v);
    }
  }
  const Ticks ticks = nice_ticks(min, max);

  // With a single epoch (or none) pad the x range by one epoch each side so the point is centred.
  double emin = epochs.empty() ? 0 : epochs.front(), emax = epochs.empty() ? 1 : epochs.back();
  if (emin == emax) {
    emin -= 1;
    emax += 1;
  }
  auto px = [&](double epoch) {
    return left + kInsetX + (epoch - emin) / (emax - emin) * (right - left - 2 * kInsetX);
  };
  auto py = [&](double v) {
    return bottom - (v - ticks.lo) / (ticks.hi - ticks.lo) * (bottom - top);
  };

  svg += "<g font-family=\"sans-serif\" font-size=\"11\" fill=\"#333\">\n";

  // Horizontal grid lines and y tick labels.
  for (int i = 0; i < ticks.count; ++i) {
    const double v = ticks.lo + i * ticks.step;
    const double y = py(v);
    svg += format("<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e5e5e5\"/>\n",
                  left, y, right, y);
    svg += format("<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#333\"/>\n",
                  left - 4, y, left, y);
    svg += format("<text x=\"%.1f\" y=\"%.1f\" dy=\"0.35em\" text-anchor=\"end\">%s</text>\n",
                  left - 7, y, tick_label(v, ticks.decimals).c_str());
  }

  // X ticks and labels, then the axis title.
  for (int e : x_label_epochs(epochs)) {
    const double x = px(e);
    svg += format("<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#333\"/>\n", x,
                  bottom, x, bottom + 4);
    svg +=
        format("<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%d</text>\n", x, bottom + 16, e);
  }
  svg += format("<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">Epoch</text>\n",
                (left + right) / 2, bottom + 36);

  // Axes drawn after the grid so they stay on top of it.
  svg += format(
      "<path d=\"M%.1f %.1fV%.1fH%.1f\" fill=\"none\" stroke=\"#333\" stroke-width=\"1\"/>\n", left,
      top, bottom, right);

  // Heading at the left and legend at the right of the row above the plot, so neither can
  // cover data.
  const double header_y = top - 14;
  svg += format("<text x=\"%.1f\" y=\"%.1f\" font-size=\"13\" font-weight=\"bold\">%s</text>\n",
                left, header_y, heading);
  struct LegendEntry {
    const char* label;
    const char* color;
    bool dashed;
    double x;  // left end of the sample line
  };
  for (const LegendEntry& entry : {LegendEntry{"train", kTrainColor, false, right - 130},
                                   LegendEntry{"test", kTestColor, true, right - 56}}) {
    svg += format(
        "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
        "stroke-width=\"2\"%s/>\n",
        entry.x, header_y - 4, entry.x + 24, header_y - 4, entry.color,
        entry.dashed ? " stroke-dasharray=\"6 4\"" : "");
    svg += format("<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\">%s</text>\n", entry.x + 30,
                  header_y, entry.label);
  }
  svg += "</g>\n";

  // Series: a line through consecutive finite points (a non-finite value breaks the line, so
  // the gap stays visible), then a circle on every finite point.
  for (const Series& s : series) {
    std::string d;
    bool pen_down = false;
    for (size_t i = 0; i < s.values.size(); ++i) {
      if (!std::isfinite(s.values[i])) {
        pen_down = false;
        continue;
      }
      d += format("%s%.1f %.1f", pen_down ? "L" : "M", px(epochs[i]), py(s.values[i]));
      pen_down = true;
    }
    if (!d.empty()) {
      // Concatenated rather than formatted: the path data can outgrow format()'s buffer.
      svg += "<path d=\"" + d + "\" fill=\"none\" stroke=\"" + s.color +
             "\" stroke-width=\"2\" stroke-linejoin=\"round\"" +
             (s.dashed ? " stroke-dasharray=\"6 4\"" : "") + "/>\n";
    }
    for (size_t i = 0; i < s.values.size(); ++i) {
      if (!std::isfinite(s.values[i])) continue;
      svg += format("<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n", px(epochs[i]),
                    py(s.values[i]), s.color);
    }
  }
}

}  // namespace

std::string metrics_csv(const std::vector<EpochMetrics>& epochs) {
  std::string csv = "epoch,train_loss,train_accuracy,test_loss,test_accuracy,seconds\n";
  for (const EpochMetrics& m : epochs) {
    csv += format("%d,%.9g,%.9g,%.9g,%.9g,%.9g\n", m.epoch, m.train_loss, m.train_accuracy,
                  m.test_loss, m.test_accuracy, m.seconds);
  }
  return csv;
}

std::string learning_curves_svg(const std::vector<EpochMetrics>& epochs, const std::string& title) {
  // Plot in epoch order even if the caller's vector is not sorted, so lines do not zigzag.
  std::vector<EpochMetrics> sorted = epochs;
  std::stable_sort(sorted.begin(), sorted.end(),
                   [](const EpochMetrics& a, const EpochMetrics& b) { return a.epoch < b.epoch; });

  std::vector<int> epoch_numbers;
  Series train_loss{{}, kTrainColor, false}, test_loss{{}, kTestColor, true};
  Series train_acc{{}, kTrainColor, false}, test_acc{{}, kTestColor, true};
  for (const EpochMetrics& m : sorted) {
    epoch_numbers.push_back(m.epoch);
    train_loss.values.push_back(m.train_loss);
    test_loss.values.push_back(m.test_loss);
    train_acc.values.push_back(100 * m.train_accuracy);
    test_acc.values.push_back(100 * m.test_accuracy);
  }

  const std::string escaped_title = xml_escape(title);
  std::string svg = format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%g\" height=\"%g\" "
      "viewBox=\"0 0 %g %g\">\n",
      kWidth, kHeight, kWidth, kHeight);
  svg += "<title>" + escaped_title + "</title>\n";
  svg += format("<rect width=\"%g\" height=\"%g\" fill=\"white\"/>\n", kWidth, kHeight);
  svg += format(
      "<text x=\"%g\" y=\"24\" font-family=\"sans-serif\" font-size=\"16\" font-weight=\"bold\" "
      "text-anchor=\"middle\" fill=\"#222\">",
      kWidth / 2);
  svg += escaped_title + "</text>\n";
  draw_panel(svg, 0, "Loss", epoch_numbers, {train_loss, test_loss});
  draw_panel(svg, kPanelWidth, "Accuracy (%)", epoch_numbers, {train_acc, test_acc});
  svg += "</svg>\n";
  return svg;
}

}  // namespace cnn
