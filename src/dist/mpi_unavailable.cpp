// start_mpi for a build without MPI: every distributed entry point says what to install.

#include "cnn/distributed.hpp"
#include "cnn/error.hpp"

namespace cnn {

bool mpi_available() {
  return false;
}

std::unique_ptr<Communicator> start_mpi() {
  throw Error(
      "this cnn was built without MPI: install openmpi-bin and libopenmpi-dev (scripts/setup.sh "
      "does) and rebuild to train with mpirun");
}

}  // namespace cnn
