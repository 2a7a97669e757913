// The test programs wait for OpenMP's threads as the cnn tool does (cnn/openmp_spin.hpp):
// ctest runs as many tests at once as there are cores, each on two threads, and with
// libgomp's default spinning the release suite took 107 s on 2 cores, with 10,000 spins 83 s.
#include "cnn/openmp_spin.hpp"

CNN_SHORT_OPENMP_SPIN();
