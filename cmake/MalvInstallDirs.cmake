# Where `cmake --install` puts MaLV-OS's files (GNU layout), known before
# src/ is configured: the host finds its policy modules and CUDA plugin
# relative to its own binary (base/install_paths.h), so an installed prefix
# works wherever it is put.
include(GNUInstallDirs)
set(MALV_INSTALL_CMAKEDIR "${CMAKE_INSTALL_LIBDIR}/cmake/Malv")
set(MALV_INSTALL_PLUGINDIR "${CMAKE_INSTALL_LIBDIR}/malv")
set(MALV_INSTALL_POLICYDIR "${MALV_INSTALL_PLUGINDIR}/policies")
# The same, relative to the directory of the installed `malv` binary.
file(RELATIVE_PATH MALV_POLICYDIR_FROM_BINDIR "/prefix/${CMAKE_INSTALL_BINDIR}"
     "/prefix/${MALV_INSTALL_POLICYDIR}")
file(RELATIVE_PATH MALV_PLUGINDIR_FROM_BINDIR "/prefix/${CMAKE_INSTALL_BINDIR}"
     "/prefix/${MALV_INSTALL_PLUGINDIR}")
