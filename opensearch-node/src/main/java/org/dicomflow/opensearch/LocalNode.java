package org.dicomflow.opensearch;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

import org.opensearch.analysis.common.CommonAnalysisPlugin;
import org.opensearch.common.logging.LogConfigurator;
import org.opensearch.common.settings.Settings;
import org.opensearch.env.Environment;
import org.opensearch.index.mapper.MapperExtrasPlugin;
import org.opensearch.index.reindex.ReindexPlugin;
import org.opensearch.node.InternalSettingsPreparer;
import org.opensearch.node.Node;
import org.opensearch.painless.PainlessPlugin;
import org.opensearch.plugins.Plugin;
import org.opensearch.transport.Netty4Plugin;

/**
 * A single OpenSearch node for dicomflow's local stack and tests, run from the engine's jars.
 *
 * <p>Usage: {@code java -cp 'lib/*' org.dicomflow.opensearch.LocalNode -Epath.home=DIR
 * -Ehttp.port=N -Ekey=value ...}. {@code path.home} must hold {@code config/log4j2.properties}.
 * The node is alone (single-node discovery) and listens on loopback unless the arguments say
 * otherwise. It has no security plugin: nothing but the local machine may reach it.
 *
 * <p>The distribution would load its modules from {@code modules/} with their descriptors and
 * security policies; here they are plain classes on the class path. What that costs: the
 * bootstrap checks, the security manager, the keystore and JNA's native calls are skipped, and
 * modules do not extend one another (analysis-common adds nothing to Painless).
 */
public final class LocalNode extends Node {

    /** The modules the platform's index needs: HTTP, analyzers, Painless, extra mappers, by-query. */
    static final List<Class<? extends Plugin>> MODULES = List.of(
            Netty4Plugin.class,
            CommonAnalysisPlugin.class,
            PainlessPlugin.class,
            MapperExtrasPlugin.class,
            ReindexPlugin.class);

    private LocalNode(Environment environment) {
        super(environment, MODULES, true);
    }

    /**
     * Settings from {@code -Ekey=value} arguments over the local defaults.
     *
     * @throws IllegalArgumentException naming an argument that is not {@code -Ekey=value}
     */
    static Settings settingsFrom(String[] args) {
        Settings.Builder builder = Settings.builder()
                // Never look for other nodes, never bind beyond this machine unless told so.
                .put("discovery.type", "single-node")
                .put("network.host", "127.0.0.1")
                .put("node.name", "dicomflow-local");
        for (String arg : args) {
            int eq = arg.indexOf('=');
            if (!arg.startsWith("-E") || eq < 3) {
                throw new IllegalArgumentException(
                        "argument '" + arg + "' is not a setting -Ekey=value");
            }
            builder.put(arg.substring(2, eq), arg.substring(eq + 1));
        }
        if (builder.get("path.home") == null) {
            throw new IllegalArgumentException("-Epath.home=DIR is required");
        }
        return builder.build();
    }

    public static void main(String[] args) throws Exception {
        Settings settings;
        try {
            settings = settingsFrom(args);
        } catch (IllegalArgumentException e) {
            System.err.println("dicomflow OpenSearch node: " + e.getMessage());
            System.exit(2);
            return;
        }
        Path home = Path.of(settings.get("path.home"));
        Path config = home.resolve("config");
        if (!Files.isRegularFile(config.resolve("log4j2.properties"))) {
            System.err.println("dicomflow OpenSearch node: " + config.resolve("log4j2.properties")
                    + " is missing (copy it from the built node's config/)");
            System.exit(2);
            return;
        }
        Environment environment = InternalSettingsPreparer.prepareEnvironment(
                settings, java.util.Map.of(), config, () -> settings.get("node.name"));
        LogConfigurator.registerErrorListener();
        LogConfigurator.configure(environment);
        // The node looks for plugins and modules in these folders even when it loads none.
        Files.createDirectories(environment.modulesFile());
        Files.createDirectories(environment.pluginsFile());

        LocalNode node = new LocalNode(environment);
        // OpenSearch's threads are daemons: this latch keeps the JVM alive until shutdown.
        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                node.close();
                node.awaitClose(20, TimeUnit.SECONDS);
            } catch (Exception e) {
                e.printStackTrace();
            } finally {
                stopped.countDown();
            }
        }, "dicomflow-node-shutdown"));
        try {
            node.start();
        } catch (Exception e) {
            e.printStackTrace();
            System.exit(1);
        }
        stopped.await();
    }
}
