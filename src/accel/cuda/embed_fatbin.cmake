# cmake -DINPUT=kernels.fatbin -DOUTPUT=kernels_fatbin.cpp -P embed_fatbin.cmake
#
# Writes the fatbin nvcc made as a C++ byte array (kKernelFatbin, see
# cuda_context.h), 64-byte aligned as cuModuleLoadData wants its image.
file(READ "${INPUT}" hex HEX)
string(LENGTH "${hex}" hex_length)
math(EXPR size "${hex_length} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
# One line per 32 bytes keeps the generated file readable in an editor.
string(REGEX REPLACE "((0x[0-9a-f][0-9a-f],){32})" "\\1\n" bytes "${bytes}")
get_filename_component(name "${INPUT}" NAME)
file(WRITE "${OUTPUT}.tmp"
  "// Generated from ${name} by embed_fatbin.cmake at build time; do not edit.\n"
  "#include <cstddef>\n\n"
  "namespace malv::accel::cuda {\n\n"
  "alignas(64) extern const unsigned char kKernelFatbin[${size}] = {\n${bytes}\n};\n"
  "extern const std::size_t kKernelFatbinSize = ${size};\n\n"
  "}  // namespace malv::accel::cuda\n")
file(RENAME "${OUTPUT}.tmp" "${OUTPUT}")
