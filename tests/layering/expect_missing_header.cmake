# Compiles a probe that includes HEADER with the include path of a
# component, read from the build's compile_commands.json entry of one of
# that component's sources (FROM_SOURCE), so the test sees exactly what the
# component's own files see. With EXPECT=missing (the default) the probe
# must fail for one reason only: HEADER is not found. Any other failure (a
# probe that no longer parses, a missing compiler, a bad flag) or a success
# fails the test. With EXPECT=found it must compile (the control).
#
#   cmake -DCOMPILER=c++ -DCOMPILE_COMMANDS=build/compile_commands.json
#         -DFROM_SOURCE=/repo/src/host/host_daemon.cpp -DHEADER=bench/bench.h
#         -DPROBE_DIR=build/tests/layering -P expect_missing_header.cmake
foreach(var COMPILER COMPILE_COMMANDS FROM_SOURCE HEADER PROBE_DIR)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "expect_missing_header.cmake needs -D${var}=...")
  endif()
endforeach()
if(NOT DEFINED EXPECT)
  set(EXPECT missing)
endif()

# The include flags of FROM_SOURCE's compile command.
file(READ "${COMPILE_COMMANDS}" commands)
string(JSON count LENGTH "${commands}")
math(EXPR last "${count} - 1")
set(command "")
foreach(i RANGE ${last})
  string(JSON file GET "${commands}" ${i} file)
  if(file STREQUAL FROM_SOURCE)
    string(JSON command GET "${commands}" ${i} command)
    break()
  endif()
endforeach()
if(command STREQUAL "")
  message(FATAL_ERROR "no compile command for ${FROM_SOURCE} in ${COMPILE_COMMANDS}")
endif()
separate_arguments(words UNIX_COMMAND "${command}")
set(include_flags "")
set(take_next FALSE)
foreach(word IN LISTS words)
  if(take_next)
    list(APPEND include_flags "${word}")
    set(take_next FALSE)
  elseif(word MATCHES "^-I.")
    list(APPEND include_flags "${word}")
  elseif(word STREQUAL "-isystem")
    list(APPEND include_flags "${word}")
    set(take_next TRUE)
  endif()
endforeach()
if(NOT include_flags MATCHES "include-shims")
  message(FATAL_ERROR "the compile command of ${FROM_SOURCE} has no component include root:\n${command}")
endif()

string(MAKE_C_IDENTIFIER "${HEADER}" probe_name)
get_filename_component(from_name "${FROM_SOURCE}" NAME_WE)
set(probe "${PROBE_DIR}/probe_${from_name}_${probe_name}.cpp")
file(WRITE "${probe}" "// Written by the layering test.\n#include \"${HEADER}\"\n")
execute_process(
  COMMAND ${COMPILER} -std=c++20 -fsyntax-only ${include_flags} ${probe}
  RESULT_VARIABLE status
  OUTPUT_VARIABLE out
  ERROR_VARIABLE out)
file(REMOVE "${probe}")

if(EXPECT STREQUAL "found")
  if(NOT status EQUAL 0)
    message(FATAL_ERROR "${HEADER} must be reachable from ${FROM_SOURCE}, but:\n${out}")
  endif()
  message(STATUS "${HEADER} is reachable from ${FROM_SOURCE}, as it should be")
  return()
endif()
if(status EQUAL 0)
  message(FATAL_ERROR "the probe compiled, but ${HEADER} must not be reachable from ${FROM_SOURCE}:\n${out}")
endif()
# GCC: "fatal error: cli/commands.h: No such file or directory"
# Clang: "fatal error: 'cli/commands.h' file not found"
string(REPLACE "." "\\." header_re "${HEADER}")
set(expected "error: (${header_re}: No such file or directory|'${header_re}' file not found)")
if(NOT out MATCHES "${expected}")
  message(FATAL_ERROR "the probe failed, but not because ${HEADER} is missing:\n${out}")
endif()
# And nothing else is wrong: every diagnostic line that says error is that one.
string(REPLACE "\n" ";" lines "${out}")
foreach(line IN LISTS lines)
  if(line MATCHES "error" AND NOT line MATCHES "${expected}")
    message(FATAL_ERROR "the probe failed for another reason too: ${line}\n${out}")
  endif()
endforeach()
message(STATUS "the probe failed as it should: ${HEADER} is not reachable from ${FROM_SOURCE}")
