# Compiles a probe that must fail for one reason only: the include of a
# higher component's header is not found under a lower component's include
# roots. Any other failure (a probe that no longer parses, a missing
# compiler, a bad flag) or a success fails the test.
#
#   cmake -DCOMPILER=c++ -DPROBE=includes_cli.cpp -DHEADER=cli/commands.h
#         -DINCLUDES="-I<shims>/base" -P expect_missing_header.cmake
foreach(var COMPILER PROBE HEADER INCLUDES)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "expect_missing_header.cmake needs -D${var}=...")
  endif()
endforeach()
separate_arguments(include_flags UNIX_COMMAND "${INCLUDES}")
execute_process(
  COMMAND ${COMPILER} -std=c++20 -fsyntax-only ${include_flags} ${PROBE}
  RESULT_VARIABLE status
  OUTPUT_VARIABLE out
  ERROR_VARIABLE out)
if(status EQUAL 0)
  message(FATAL_ERROR "the probe compiled, but ${HEADER} must not be reachable:\n${out}")
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
message(STATUS "the probe failed as it should: ${HEADER} is not reachable")
