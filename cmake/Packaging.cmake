# Install layout and packages. A CPU package that runs on nodes without CUDA, and a GPU add-on,
# so a CPU-only cluster does not ship 400+ MB of cuBLAS; no test or benchmark binary is packaged.
#
# Components (`cmake --install build --prefix P [--component C]`):
#   runtime   bin/taskfarm-{sink,worker,ventilator}, bin/taskfarm, lib/taskfarm/taskfarm-service,
#             share/taskfarm/ (README, examples, launch_ssh.sh)
#   gpu       lib/taskfarm/libtaskfarm_gpu.so: the CUDA kernels, dlopen'ed by a worker on a node
#             with a CUDA driver; it loads the node's cuBLAS, or the one of the cudalibs add-on
#   dev       include/taskfarm/plugin.h, lib/cmake/taskfarm/: build kernel plugins with
#             find_package(taskfarm) (cmake/PluginPackage.cmake); in the main packages
#   libs      lib/: every other shared library the programs load except glibc and the CUDA
#             driver (libzmq, libsodium, libprotobuf, libfmt, libstdc++, ...): self-contained
#   cudalibs  lib/: the CUDA libraries the plugin loads (cuBLAS); only on request
#   service   systemd units, /etc/taskfarm/taskfarm.conf: the .deb only
# A plain `cmake --install` installs runtime, dev, gpu and libs: the CPU package.
#
# Packages (`cd build && cpack -G TGZ` or `cpack -G DEB`):
#   TGZ taskfarm-V-Linux-ARCH.tar.gz            runtime + dev + gpu + libs: runs anywhere (RPATH
#                                               $ORIGIN/../lib)
#       taskfarm-cudalibs-V-Linux-ARCH.tar.gz   cuBLAS for GPU nodes that lack it (CUDA builds)
#   DEB taskfarm_V-1_ARCH.deb                   runtime + dev + service in /usr and /etc; Debian's
#                                               libraries are declared dependencies
#       taskfarm-gpu_V-1_ARCH.deb               the plugin (CUDA builds; cuBLAS from the node)

include(GNUInstallDirs)

# The executables and the plugin come from install(TARGETS ...) at the top level.
# Generator expressions, so this file may be included before the targets are defined.
set(_tf_exes "")
foreach(_tf_target IN ITEMS taskfarm-sink taskfarm-worker taskfarm-ventilator taskfarm)
  string(APPEND _tf_exes
         " $<$<TARGET_EXISTS:${_tf_target}>:\"$<TARGET_FILE:${_tf_target}>\">")
endforeach()
set(_tf_modules
    "$<$<TARGET_EXISTS:taskfarm_gpu_plugin>:\"$<TARGET_FILE:taskfarm_gpu_plugin>\">")
# Where cuBLAS is when the toolkit is not in the loader's search path.
set(_tf_dirs "")
if(CUDAToolkit_LIBRARY_DIR)
  set(_tf_dirs "\"${CUDAToolkit_LIBRARY_DIR}\"")
endif()
# The CUDA libraries: in the cudalibs add-on, never in the CPU package.
set(_tf_cuda_libs [[/lib(cu[A-Za-z]*|nv[A-Za-z]*)\.so[^/]*$]])

# Copies the shared libraries that the programs (and plugin) load into PREFIX/lib at install
# time; `_tf_keep` selects the CUDA libraries (cudalibs) or all the others (libs). glibc's own
# libraries and the CUDA driver must come from the node: a copy would not match its kernel.
function(_tf_install_libraries component keep)
  set(_tf_extra "")
  if(NOT component STREQUAL "libs")
    set(_tf_extra EXCLUDE_FROM_ALL)
  endif()
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
      if(_tf_dep MATCHES [[${_tf_cuda_libs}]])
        set(_tf_is_cuda TRUE)
      else()
        set(_tf_is_cuda FALSE)
      endif()
      if(_tf_is_cuda STREQUAL \"${keep}\")
        file(INSTALL DESTINATION \"\${CMAKE_INSTALL_PREFIX}/lib\" TYPE SHARED_LIBRARY
             FOLLOW_SYMLINK_CHAIN FILES \"\${_tf_dep}\")
      endif()
    endforeach()
  " COMPONENT ${component} ${_tf_extra})
endfunction()
_tf_install_libraries(libs FALSE)
if(TASKFARM_ENABLE_CUDA)
  _tf_install_libraries(cudalibs TRUE)
endif()

install(FILES ${PROJECT_SOURCE_DIR}/README.md DESTINATION share/taskfarm COMPONENT runtime)
install(DIRECTORY ${PROJECT_SOURCE_DIR}/examples/ DESTINATION share/taskfarm/examples
        COMPONENT runtime)
install(PROGRAMS ${PROJECT_SOURCE_DIR}/scripts/launch_ssh.sh DESTINATION share/taskfarm
        COMPONENT runtime)
install(PROGRAMS ${PROJECT_SOURCE_DIR}/packaging/taskfarm-service DESTINATION lib/taskfarm
        COMPONENT runtime)
# systemd units and their configuration: in the .deb (installed under /usr and /etc).
install(FILES ${PROJECT_SOURCE_DIR}/packaging/taskfarm-sink.service
              ${PROJECT_SOURCE_DIR}/packaging/taskfarm-ventilator.service
              ${PROJECT_SOURCE_DIR}/packaging/taskfarm-worker@.service
        DESTINATION lib/systemd/system COMPONENT service EXCLUDE_FROM_ALL)
install(FILES ${PROJECT_SOURCE_DIR}/packaging/taskfarm.conf DESTINATION /etc/taskfarm
        COMPONENT service EXCLUDE_FROM_ALL)

set(CPACK_PACKAGE_NAME taskfarm)
set(CPACK_PACKAGE_VENDOR taskfarm)
set(CPACK_PACKAGE_CONTACT "taskfarm developers <taskfarm@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
    "Distributed task farm over ZeroMQ: ventilator, CPU/GPU workers and sink")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_GENERATOR TGZ)
set(CPACK_SOURCE_GENERATOR "")
set(CPACK_STRIP_FILES OFF)  # keep symbols: the only debugging aid on a cluster node
set(CPACK_ARCHIVE_COMPONENT_INSTALL ON)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_GROUPING ONE_PER_GROUP)
# taskfarm-0.1.0-Linux-x86_64.tar.gz unpacking into taskfarm-0.1.0-Linux-x86_64/{bin,lib,share};
# the cudalibs add-on unpacks into the same folder.
set(CPACK_PACKAGE_FILE_NAME
    "taskfarm-${PROJECT_VERSION}-${CMAKE_SYSTEM_NAME}-${CMAKE_SYSTEM_PROCESSOR}")
set(CPACK_ARCHIVE_MAIN_FILE_NAME ${CPACK_PACKAGE_FILE_NAME})
set(CPACK_ARCHIVE_CUDALIBS_FILE_NAME
    "taskfarm-cudalibs-${PROJECT_VERSION}-${CMAKE_SYSTEM_NAME}-${CMAKE_SYSTEM_PROCESSOR}")

set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_RELEASE 1)
set(CPACK_DEBIAN_PACKAGE_SECTION misc)
set(CPACK_DEBIAN_MAIN_PACKAGE_NAME taskfarm)
set(CPACK_DEBIAN_MAIN_PACKAGE_SHLIBDEPS ON)  # libzmq5, libprotobuf32, libfmt9, ... declared
set(CPACK_DEBIAN_MAIN_PACKAGE_DEPENDS "passwd")  # useradd in postinst
set(CPACK_DEBIAN_MAIN_PACKAGE_RECOMMENDS "openssh-client")  # launch_ssh.sh
set(CPACK_DEBIAN_MAIN_PACKAGE_CONTROL_EXTRA
    ${PROJECT_SOURCE_DIR}/packaging/postinst ${PROJECT_SOURCE_DIR}/packaging/prerm
    ${PROJECT_SOURCE_DIR}/packaging/postrm ${PROJECT_SOURCE_DIR}/packaging/conffiles)
set(CPACK_DEBIAN_MAIN_DESCRIPTION
    "taskfarm-sink, taskfarm-ventilator, taskfarm-worker and the taskfarm job client, with systemd
units (taskfarm-sink, taskfarm-ventilator, taskfarm-worker@GPU) configured in
/etc/taskfarm/taskfarm.conf, and what kernel plugins are built with (include/taskfarm/plugin.h,
find_package(taskfarm); an example in /usr/share/taskfarm/examples/plugins). The GPU kernels are
in taskfarm-gpu.")
set(CPACK_DEBIAN_GPU_PACKAGE_NAME taskfarm-gpu)
# cuBLAS comes from the node (NVIDIA's CUDA packages or toolkit), which Debian does not package
# in the version the plugin was built with: no declared dependency on it.
set(CPACK_DEBIAN_GPU_PACKAGE_SHLIBDEPS OFF)
set(CPACK_DEBIAN_GPU_PACKAGE_DEPENDS "taskfarm (= ${PROJECT_VERSION}-1)")
set(CPACK_DEBIAN_GPU_DESCRIPTION
    "The plugin a taskfarm worker loads on a node with a CUDA driver. It needs the CUDA
libraries it was built with (cuBLAS) on the node; without them workers run on the CPU.")

# Which components each generator packages, decided at cpack time (CPACK_GENERATOR is known
# only then): the TGZ bundles libraries, the .deb declares them and adds the services.
set(_tf_gpu_components "")
set(_tf_cudalibs_components "")
if(TASKFARM_ENABLE_CUDA)
  set(_tf_gpu_components gpu)
  set(_tf_cudalibs_components cudalibs)
endif()
set(CPACK_PROJECT_CONFIG_FILE ${PROJECT_BINARY_DIR}/CPackTaskfarm.cmake)
file(WRITE ${PROJECT_BINARY_DIR}/CPackTaskfarm.cmake "
set(CPACK_COMPONENT_RUNTIME_GROUP main)
set(CPACK_COMPONENT_LIBS_GROUP main)
set(CPACK_COMPONENT_SERVICE_GROUP main)
set(CPACK_COMPONENT_DEV_GROUP main)
if(CPACK_GENERATOR STREQUAL \"DEB\")
  set(CPACK_COMPONENTS_ALL runtime dev service ${_tf_gpu_components})
  set(CPACK_COMPONENT_GPU_GROUP gpu)
  set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
  set(CPACK_INCLUDE_TOPLEVEL_DIRECTORY OFF)
  set(CPACK_COMPONENT_INCLUDE_TOPLEVEL_DIRECTORY OFF)
else()
  set(CPACK_INCLUDE_TOPLEVEL_DIRECTORY ON)
  set(CPACK_COMPONENT_INCLUDE_TOPLEVEL_DIRECTORY ON)
  set(CPACK_COMPONENTS_ALL runtime dev libs ${_tf_gpu_components} ${_tf_cudalibs_components})
  set(CPACK_COMPONENT_GPU_GROUP main)
  set(CPACK_COMPONENT_CUDALIBS_GROUP cudalibs)
endif()
")
include(CPack)
cpack_add_component_group(main)
cpack_add_component_group(gpu)
cpack_add_component_group(cudalibs)
