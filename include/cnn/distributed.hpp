#pragma once
// Data-parallel training across processes: the collective operations the trainer needs, over
// MPI when cnn was built with it (Debian's Open MPI) and the process was started by mpirun, and
// the single-process identities otherwise. docs/distributed.md describes the scheme and how to
// run it on several hosts.

#include <cstdint>
#include <memory>

#include "cnn/error.hpp"

namespace cnn {

/// The ranks of one job. Every collective (sum, max, broadcast, gather, all_equal) must be
/// called by every rank, in the same order, with the same counts; only the calling thread of
/// the process may call it (MPI_THREAD_FUNNELED), never from inside a parallel region.
class Communicator {
 public:
  virtual ~Communicator() = default;
  /// This process's rank, 0 .. size() - 1; rank 0 prints and writes files.
  virtual int rank() const = 0;
  /// The number of ranks in the job.
  virtual int size() const = 0;
  /// The number of ranks on this host (they share its cores).
  virtual int local_size() const = 0;
  /// data[i] = the sum over ranks of data[i], on every rank (n elements, in place).
  virtual void sum(float* data, int64_t n) = 0;
  virtual void sum(double* data, int64_t n) = 0;
  /// data[i] = the maximum over ranks of data[i], on every rank.
  virtual void max(double* data, int64_t n) = 0;
  /// data (n elements) = rank 0's data, on every rank.
  virtual void broadcast(float* data, int64_t n) = 0;
  /// Rank 0's `all` (n * size() elements) = every rank's `mine` (n each), in rank order; `all`
  /// is not touched on other ranks.
  virtual void gather(const uint64_t* mine, int64_t n, uint64_t* all) = 0;
  /// True on every rank when every rank passed the same value.
  virtual bool all_equal(uint64_t value) = 0;
  /// Ends every rank of the job with `code` (MPI_Abort): the way out of an error that only
  /// this rank saw, which would otherwise leave the others waiting in a collective forever.
  [[noreturn]] virtual void abort(int code) = 0;
};

/// An error that every rank of a data-parallel run raises alike, at the same point (a diverging
/// loss, a checkpoint that does not fit, a batch too small to split): one rank reports it and
/// every rank ends normally, instead of aborting the job.
class RanksError : public Error {
 public:
  using Error::Error;
};

/// One process: sums, maxima and broadcasts leave the data as it is.
class SingleProcess final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  int local_size() const override { return 1; }
  void sum(float*, int64_t) override {}
  void sum(double*, int64_t) override {}
  void max(double*, int64_t) override {}
  void broadcast(float*, int64_t) override {}
  void gather(const uint64_t* mine, int64_t n, uint64_t* all) override;
  bool all_equal(uint64_t) override { return true; }
  [[noreturn]] void abort(int code) override;
};

/// Whether this build of cnn has MPI (CMake option CNN_MPI; Debian's libopenmpi-dev).
bool mpi_available();

/// True when the environment says an MPI launcher (Open MPI's or MPICH's mpirun) started this
/// process as one of several ranks.
bool launched_by_mpirun();

/// Initialises MPI (once per process; finalised when the returned object is destroyed) and
/// returns the communicator of all the job's ranks. Throws cnn::Error when cnn was built
/// without MPI ("... rebuild with libopenmpi-dev installed") or MPI cannot start.
std::unique_ptr<Communicator> start_mpi();

}  // namespace cnn
