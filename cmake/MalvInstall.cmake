# What `cmake --install <build> --prefix <p>` puts under <p>
# (docs/client-api.md describes the layout and what of it is stable):
#
#   bin/malv                            the host and admin command
#   lib/libmalv.so.<version>            the guest client library, with its
#   lib/libmalv.so.<soversion>          soname link and the development link
#   lib/libmalv.so
#   lib/malv/policies/*.so              the built-in MLaaS policy modules (and
#                                       the model files they load)
#   lib/malv/*.so                       the CUDA backend plugin, where built
#   include/malv/*.h                    client API, MLaaS ABI (mlaas.h), wire protocol
#   lib/cmake/Malv/                     find_package(Malv): Malv::malv and
#                                       Malv::policy_module_sdk
#   lib/pkgconfig/malv.pc               pkg-config for the client library, and
#   lib/pkgconfig/malv-policy-module.pc for policy modules (include path only)
#   share/doc/malv-os/examples/         the out-of-tree guest program and module
#
# Every installed file names its neighbours relative to itself, so a prefix
# can be moved after installing.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

# MALV_INSTALL_CMAKEDIR, MALV_INSTALL_PLUGINDIR and MALV_INSTALL_POLICYDIR
# come from cmake/MalvInstallDirs.cmake.

# The policy-module SDK: the include path of malv/mlaas.h (plain C11) and no
# library at all; a module is loaded by the host, never linked to it. Named
# so it is not taken for the host's own MLaaS library (malv_mlaas).
add_library(malv_policy_module_sdk INTERFACE)
add_library(Malv::policy_module_sdk ALIAS malv_policy_module_sdk)
target_include_directories(malv_policy_module_sdk INTERFACE
  "$<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include>"
  "$<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>")
set_target_properties(malv_policy_module_sdk PROPERTIES EXPORT_NAME policy_module_sdk)

# A sanitizer build's libmalv can only be loaded by a program built with the
# same sanitizers (their runtime must come first); say so in its link interface.
if(MALV_SANITIZE)
  list(JOIN MALV_SANITIZE "," malv_install_sanitizers)
  set(MALV_SANITIZE_FLAGS "-fsanitize=${malv_install_sanitizers}")
  target_link_options(libmalv INTERFACE "$<INSTALL_INTERFACE:${MALV_SANITIZE_FLAGS}>")
else()
  set(MALV_SANITIZE_FLAGS "")
endif()

install(TARGETS libmalv malv_policy_module_sdk
  EXPORT MalvTargets
  LIBRARY DESTINATION "${CMAKE_INSTALL_LIBDIR}"
  INCLUDES DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}")
install(DIRECTORY "${PROJECT_SOURCE_DIR}/include/malv"
  DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}"
  FILES_MATCHING PATTERN "*.h")

# The host: the `malv` command (src/cli), the built-in policy modules
# (every target src/policies hangs under malv_policies) and the CUDA plugin.
if(TARGET malv)
  install(TARGETS malv RUNTIME DESTINATION "${CMAKE_INSTALL_BINDIR}")
endif()
if(TARGET malv_policies)
  get_target_property(malv_install_policy_modules malv_policies MANUALLY_ADDED_DEPENDENCIES)
  if(malv_install_policy_modules)
    install(TARGETS ${malv_install_policy_modules}
      LIBRARY DESTINATION "${MALV_INSTALL_POLICYDIR}")
  endif()
  # Model files that modules load from their own directory.
  get_property(malv_install_policy_models GLOBAL PROPERTY MALV_POLICY_MODEL_FILES)
  if(malv_install_policy_models)
    install(FILES ${malv_install_policy_models} DESTINATION "${MALV_INSTALL_POLICYDIR}")
  endif()
endif()
if(TARGET malv_accel_aten_plugin)
  install(TARGETS malv_accel_aten_plugin LIBRARY DESTINATION "${MALV_INSTALL_PLUGINDIR}")
endif()
if(TARGET malv_accel_cuda)
  install(TARGETS malv_accel_cuda LIBRARY DESTINATION "${MALV_INSTALL_PLUGINDIR}")
endif()

# find_package(Malv): targets, paths, and the version rule (0.x: the same
# minor version; docs/client-api.md).
install(EXPORT MalvTargets NAMESPACE Malv:: DESTINATION "${MALV_INSTALL_CMAKEDIR}")
configure_package_config_file("${PROJECT_SOURCE_DIR}/cmake/MalvConfig.cmake.in"
  "${PROJECT_BINARY_DIR}/install/MalvConfig.cmake"
  INSTALL_DESTINATION "${MALV_INSTALL_CMAKEDIR}"
  PATH_VARS CMAKE_INSTALL_BINDIR CMAKE_INSTALL_INCLUDEDIR MALV_INSTALL_POLICYDIR)
write_basic_package_version_file("${PROJECT_BINARY_DIR}/install/MalvConfigVersion.cmake"
  VERSION "${PROJECT_VERSION}"
  COMPATIBILITY SameMinorVersion)
install(FILES "${PROJECT_BINARY_DIR}/install/MalvConfig.cmake"
              "${PROJECT_BINARY_DIR}/install/MalvConfigVersion.cmake"
  DESTINATION "${MALV_INSTALL_CMAKEDIR}")

# pkg-config files find the prefix from where they are (${pcfiledir}).
file(RELATIVE_PATH MALV_PC_TO_PREFIX "/prefix/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/prefix")
foreach(pc malv malv-policy-module)
  configure_file("${PROJECT_SOURCE_DIR}/cmake/${pc}.pc.in"
    "${PROJECT_BINARY_DIR}/install/${pc}.pc" @ONLY)
  install(FILES "${PROJECT_BINARY_DIR}/install/${pc}.pc"
    DESTINATION "${CMAKE_INSTALL_LIBDIR}/pkgconfig")
endforeach()

install(DIRECTORY "${PROJECT_SOURCE_DIR}/examples/"
  DESTINATION "${CMAKE_INSTALL_DOCDIR}/examples")
