// The Communicator over MPI (Open MPI from Debian; any MPI-3 library would do). Counts larger
// than an int are sent in pieces: MPI's counts are ints.

#include <mpi.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <string>

#include "cnn/distributed.hpp"
#include "cnn/error.hpp"

namespace cnn {

namespace {

void check(int code, const char* what) {
  if (code == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(code, text, &length);
  throw Error(std::string("MPI: ") + what + " failed: " + std::string(text, length));
}

/// Calls f(offset, count) over [0, n) in pieces that fit an int.
template <typename F>
void in_pieces(int64_t n, const F& f) {
  constexpr int64_t kPiece = INT_MAX / 2;
  for (int64_t offset = 0; offset < n; offset += kPiece)
    f(offset, static_cast<int>(std::min(kPiece, n - offset)));
}

class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator() {
    int initialised = 0;
    MPI_Initialized(&initialised);
    if (initialised) throw Error("MPI: start_mpi called twice in one process");
    int provided = 0;
    // The training loop calls MPI from its main thread only, outside the OpenMP regions.
    check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
    if (provided < MPI_THREAD_FUNNELED) throw Error("MPI: no MPI_THREAD_FUNNELED support");
    // Errors come back as codes (then cnn::Error) instead of MPI's default abort.
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
    MPI_Comm local;
    check(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &local),
          "MPI_Comm_split_type");
    MPI_Comm_size(local, &local_size_);
    MPI_Comm_free(&local);
  }
  ~MpiCommunicator() override { MPI_Finalize(); }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  int local_size() const override { return local_size_; }

  void sum(float* data, int64_t n) override { reduce(data, n, MPI_FLOAT, MPI_SUM); }
  void sum(double* data, int64_t n) override { reduce(data, n, MPI_DOUBLE, MPI_SUM); }
  void max(double* data, int64_t n) override { reduce(data, n, MPI_DOUBLE, MPI_MAX); }

  void broadcast(float* data, int64_t n) override {
    in_pieces(n, [&](int64_t offset, int count) {
      check(MPI_Bcast(data + offset, count, MPI_FLOAT, 0, MPI_COMM_WORLD), "MPI_Bcast");
    });
  }

  void gather(const uint64_t* mine, int64_t n, uint64_t* all) override {
    if (n > INT_MAX) throw Error("MPI: gather of more than INT_MAX elements");
    check(MPI_Gather(mine, static_cast<int>(n), MPI_UINT64_T, all, static_cast<int>(n),
                     MPI_UINT64_T, 0, MPI_COMM_WORLD),
          "MPI_Gather");
  }

  bool all_equal(uint64_t value) override {
    uint64_t range[2] = {value, ~value};  // max of value and of its complement: max and min
    check(MPI_Allreduce(MPI_IN_PLACE, range, 2, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD),
          "MPI_Allreduce");
    return range[0] == ~range[1];
  }

  [[noreturn]] void abort(int code) override {
    MPI_Abort(MPI_COMM_WORLD, code);
    std::_Exit(code);  // MPI_Abort does not return; this keeps [[noreturn]] true regardless
  }

 private:
  template <typename T>
  void reduce(T* data, int64_t n, MPI_Datatype type, MPI_Op op) {
    in_pieces(n, [&](int64_t offset, int count) {
      check(MPI_Allreduce(MPI_IN_PLACE, data + offset, count, type, op, MPI_COMM_WORLD),
            "MPI_Allreduce");
    });
  }

  int rank_ = 0, size_ = 1, local_size_ = 1;
};

}  // namespace

bool mpi_available() {
  return true;
}

std::unique_ptr<Communicator> start_mpi() {
  return std::make_unique<MpiCommunicator>();
}

}  // namespace cnn
