# Install layout and CPack: a relocatable tarball that runs on a node with none of taskfarm's
# libraries installed (the packaged form of scripts/bundle.sh).
#
#   PREFIX/bin/taskfarm-{sink,worker,ventilator}, taskfarm (client), libtaskfarm_gpu.so (CUDA
#                    plugin, when built)   RPATH $ORIGIN/../lib (set at top level)
#   PREFIX/lib/      every shared library they load except glibc and the CUDA driver
#   PREFIX/share/taskfarm/  README, examples, scripts/launch_ssh.sh
#
#   cmake --install build --prefix /opt/taskfarm      # or: cd build && cpack -G TGZ
#
# The executables themselves are installed by the top-level install(TARGETS ...).

# Generator expressions, so this file may be included before the targets are defined; the
# `taskfarm` job client is packaged when the tree has one.
set(_tf_exes "")
foreach(_tf_target IN ITEMS taskfarm-sink taskfarm-worker taskfarm-ventilator taskfarm)
  string(APPEND _tf_exes
         " $<$<TARGET_EXISTS:${_tf_target}>:\"$<TARGET_FILE:${_tf_target}>\">")
endforeach()
# The CUDA kernels plugin (bin/libtaskfarm_gpu.so, dlopen'ed by the worker; installed by
# kernels/cuda) brings cuBLAS.
set(_tf_modules
    "$<$<TARGET_EXISTS:taskfarm_gpu_plugin>:\"$<TARGET_FILE:taskfarm_gpu_plugin>\">")
# Where cuBLAS is when the toolkit is not in the loader's search path.
set(_tf_dirs "")
if(CUDAToolkit_LIBRARY_DIR)
  set(_tf_dirs "\"${CUDAToolkit_LIBRARY_DIR}\"")
endif()

# Shared libraries, resolved at install time from the built executables (libzmq, libsodium,
# libprotobuf, libfmt, libstdc++, cuBLAS, ... and what they load). glibc's own libraries and the
# CUDA driver must come from the node: a copied glibc or driver would not match its kernel.
install(CODE "
  set(_tf_exes ${_tf_exes})
  set(_tf_modules ${_tf_modules})
  set(_tf_module_args)
  if(_tf_modules)
    set(_tf_module_args MODULES \${_tf_modules})
  endif()
  file(GET_RUNTIME_DEPENDENCIES
    EXECUTABLES \${_tf_exes}
    \${_tf_module_args}
    DIRECTORIES ${_tf_dirs}
    RESOLVED_DEPENDENCIES_VAR _tf_deps
    UNRESOLVED_DEPENDENCIES_VAR _tf_missing
    PRE_EXCLUDE_REGEXES
      [[^(ld-linux|linux-vdso|libc|libm|libdl|libpthread|librt|libresolv|libutil|libanl|libnsl|libcrypt)\\.so]]
      [[^ld-linux-.*\\.so]]
      [[^libcuda\\.so]] [[^libnvidia-.*\\.so]]
    POST_EXCLUDE_REGEXES
      [[/(ld-linux|libc|libm|libdl|libpthread|librt|libresolv|libutil|libanl|libnsl|libcrypt)\\.so[^/]*$]]
      [[/ld-linux-[^/]*$]]
      [[/libcuda\\.so[^/]*$]] [[/libnvidia-[^/]*$]])
  if(_tf_missing)
    message(FATAL_ERROR \"taskfarm: unresolved shared libraries: \${_tf_missing}\")
  endif()
  foreach(_tf_dep IN LISTS _tf_deps)
    file(INSTALL DESTINATION \"\${CMAKE_INSTALL_PREFIX}/lib\" TYPE SHARED_LIBRARY
         FOLLOW_SYMLINK_CHAIN FILES \"\${_tf_dep}\")
  endforeach()
" COMPONENT Runtime)

install(FILES ${PROJECT_SOURCE_DIR}/README.md DESTINATION share/taskfarm COMPONENT Runtime)
install(DIRECTORY ${PROJECT_SOURCE_DIR}/examples/ DESTINATION share/taskfarm/examples
        COMPONENT Runtime)
if(EXISTS ${PROJECT_SOURCE_DIR}/scripts/launch_ssh.sh)
  install(PROGRAMS ${PROJECT_SOURCE_DIR}/scripts/launch_ssh.sh DESTINATION share/taskfarm
          COMPONENT Runtime)
endif()

set(CPACK_PACKAGE_NAME taskfarm)
set(CPACK_PACKAGE_VENDOR taskfarm)
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
    "Distributed task farm over ZeroMQ: ventilator, CPU/GPU workers and sink")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_GENERATOR TGZ)
set(CPACK_SOURCE_GENERATOR "")
# taskfarm-0.1.0-Linux-x86_64.tar.gz unpacking into taskfarm-0.1.0-Linux-x86_64/{bin,lib,share}
set(CPACK_PACKAGE_FILE_NAME
    "taskfarm-${PROJECT_VERSION}-${CMAKE_SYSTEM_NAME}-${CMAKE_SYSTEM_PROCESSOR}")
set(CPACK_INCLUDE_TOPLEVEL_DIRECTORY ON)
set(CPACK_STRIP_FILES OFF)  # keep symbols: the only debugging aid on a cluster node
include(CPack)
