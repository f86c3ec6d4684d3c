# Installs the libraries and public headers and exports a CMake package, so a user's own
# orchestrator does:  find_package(saga REQUIRED)  target_link_libraries(app saga::engine ...)
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

install(TARGETS saga_engine saga_testing saga_sqlite saga_memory_transport saga_zmq_transport
                saga_order
        EXPORT sagaTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
if(SAGA_BUILD_TOOLS)
  install(TARGETS sagactl RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
endif()
install(DIRECTORY engine/include/saga persistence/sqlite/include/saga
                  transports/memory/include/saga transports/zmq/include/saga
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(FILES sagas/order/messages.hpp sagas/order/order_saga.hpp
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/sagas/order)

set(SAGA_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/saga)
install(EXPORT sagaTargets NAMESPACE saga:: DESTINATION ${SAGA_CMAKE_DIR})
configure_package_config_file(cmake/sagaConfig.cmake.in ${PROJECT_BINARY_DIR}/sagaConfig.cmake
                              INSTALL_DESTINATION ${SAGA_CMAKE_DIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/sagaConfigVersion.cmake
                                 COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/sagaConfig.cmake ${PROJECT_BINARY_DIR}/sagaConfigVersion.cmake
        DESTINATION ${SAGA_CMAKE_DIR})
