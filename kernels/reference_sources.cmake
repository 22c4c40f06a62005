# The engine sources that the kernels' GPU test needs for its CPU reference
# (tests/cuda/cpu_reference.cpp -> src/backend/cpu/paged_attention.cpp and what that calls), relative
# to the repository root. kernels/CMakeLists.txt builds the test from exactly these on the GPU
# machine, which lacks the engine's other dependencies; the main build links them alone into a
# shared library with no undefined symbols allowed, so CI fails when they come to need a file not
# listed here.
set(HS_KERNEL_TEST_REFERENCE_SOURCES
  tests/cuda/cpu_reference.cpp
  src/backend/cpu/paged_attention.cpp
  src/backend/cpu/ops.cpp
  src/model/weights.cpp
  src/model/dequant.cpp
  src/model/ggml_type.cpp
  src/model/gguf.cpp
  src/model/config.cpp
  src/util/thread_pool.cpp)
