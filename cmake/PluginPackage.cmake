# The plugin SDK: what a user project needs to build a kernel plugin against an installed
# taskfarm (component `dev`):
#   include/taskfarm/plugin.h                      the plugin interface, the only public header
#   lib/cmake/taskfarm/taskfarmConfig.cmake        find_package(taskfarm): taskfarm::plugin
#   lib/cmake/taskfarm/taskfarmConfigVersion.cmake   and taskfarm_add_plugin()
#   lib/cmake/taskfarm/taskfarmTargets.cmake
#   lib/cmake/taskfarm/TaskfarmAddPlugin.cmake
# Plugins link nothing of taskfarm: the header is all there is to build against.

include(CMakePackageConfigHelpers)

# The header's ABI version, for the package's taskfarm_PLUGIN_ABI_VERSION.
file(STRINGS ${PROJECT_SOURCE_DIR}/include/taskfarm/plugin.h _tf_abi_line
     REGEX "^#define TF_PLUGIN_ABI_VERSION [0-9]+")
string(REGEX REPLACE "^#define TF_PLUGIN_ABI_VERSION ([0-9]+).*" "\\1" TASKFARM_PLUGIN_ABI_VERSION
       "${_tf_abi_line}")

# taskfarm::plugin: the include directory of the interface, in the build tree and installed.
add_library(taskfarm_plugin_api INTERFACE)
add_library(taskfarm::plugin ALIAS taskfarm_plugin_api)
target_include_directories(taskfarm_plugin_api INTERFACE
  $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include>
  $<INSTALL_INTERFACE:include>)
set_target_properties(taskfarm_plugin_api PROPERTIES EXPORT_NAME plugin)

set(TASKFARM_CMAKE_DIR lib/cmake/taskfarm)
install(FILES ${PROJECT_SOURCE_DIR}/include/taskfarm/plugin.h DESTINATION include/taskfarm
        COMPONENT dev)
install(TARGETS taskfarm_plugin_api EXPORT taskfarmTargets COMPONENT dev)
install(EXPORT taskfarmTargets NAMESPACE taskfarm:: DESTINATION ${TASKFARM_CMAKE_DIR}
        COMPONENT dev)
configure_package_config_file(
  ${CMAKE_CURRENT_LIST_DIR}/taskfarmConfig.cmake.in
  ${PROJECT_BINARY_DIR}/cmake/taskfarmConfig.cmake
  INSTALL_DESTINATION ${TASKFARM_CMAKE_DIR})
# SameMajorVersion: what a plugin needs is its ABI version, which the worker checks at load.
write_basic_package_version_file(
  ${PROJECT_BINARY_DIR}/cmake/taskfarmConfigVersion.cmake
  COMPATIBILITY SameMajorVersion)
install(FILES ${PROJECT_BINARY_DIR}/cmake/taskfarmConfig.cmake
              ${PROJECT_BINARY_DIR}/cmake/taskfarmConfigVersion.cmake
              ${CMAKE_CURRENT_LIST_DIR}/TaskfarmAddPlugin.cmake
        DESTINATION ${TASKFARM_CMAKE_DIR} COMPONENT dev)
